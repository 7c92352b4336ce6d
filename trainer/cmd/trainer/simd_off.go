//go:build !goexperiment.simd

package main

// simdBuild reports whether this binary was built with GOEXPERIMENT=simd,
// with which GoMLX's pure-Go backend uses its SIMD kernels.
const simdBuild = false
