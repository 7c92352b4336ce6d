// Package preprocesstest holds the golden image that pins Orchard's
// preprocessing: every caller (the trainer's dataset loader, the HTTP and
// upload functions) must turn it into exactly the tensor whose digest is
// GoldenDigest. A change here means every trained model would be served
// skewed inputs, so the digest only changes with a deliberate format bump.
package preprocesstest

import (
	"crypto/sha256"
	_ "embed"
	"encoding/binary"
	"encoding/hex"
	"math"

	"github.com/orchard-mlops/orchard/shared/preprocess"
)

// GoldenJPEG is a 96x64 photo-like JPEG carrying EXIF orientation 6, so it
// exercises sniffing, decoding, orientation, fitting and normalisation.
//
//go:embed golden.jpg
var GoldenJPEG []byte

// GoldenSpec is the spec the digest is taken with.
var GoldenSpec = preprocess.DefaultSpec(32)

// GoldenDigest is TensorDigest of GoldenJPEG through GoldenSpec.
const GoldenDigest = "sha256:bd21cac19548fd82f9787d08c1ce9e5be7963de4d710767d82f3356801ba5bd5"

// TensorDigest hashes a tensor's exact bits (little-endian float32), so
// equal digests mean bit-identical tensors.
func TensorDigest(x []float32) string {
	b := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// GoldenPaddedSpec is GoldenSpec with border-median padding
// (preprocess.PadBorderMedian): the digest pins that path too.
var GoldenPaddedSpec = func() preprocess.Spec {
	s := preprocess.DefaultSpec(32)
	s.Pad = preprocess.PadBorderMedian
	return s
}()

// GoldenPaddedDigest is TensorDigest of GoldenJPEG through GoldenPaddedSpec.
const GoldenPaddedDigest = "sha256:44cf092ff8265df4331a7afbe24fe09f8f2a128a4844677a94083ef58468144e"

// GoldenCanonicalSpec is GoldenSpec with every canonical framing and
// exposure step on (border-median pad, object framing, object levels,
// backdrop repaint): the digest pins that path too.
var GoldenCanonicalSpec = func() preprocess.Spec {
	s := GoldenPaddedSpec
	s.Framing = preprocess.FramingObject
	s.Levels = preprocess.LevelsObject
	s.Backdrop = preprocess.BackdropRepaint
	return s
}()

// GoldenCanonicalDigest is TensorDigest of GoldenJPEG through
// GoldenCanonicalSpec.
const GoldenCanonicalDigest = "sha256:71ccba5381b9e82d7df8190b6d498dc122aa24c4d1da7db9d1fd1384ffff9b73"

// GoldenSmallSpec is GoldenPaddedSpec with small-object framing
// (FramingSmall): the default config's spec since 2026-12-07.
var GoldenSmallSpec = func() preprocess.Spec {
	s := GoldenPaddedSpec
	s.Framing = preprocess.FramingSmall
	return s
}()

// GoldenSmallDigest is TensorDigest of GoldenJPEG through GoldenSmallSpec.
const GoldenSmallDigest = "sha256:e9282ddaa2a73485a8307910da80ee2d76115f35b8311a5f936cdd1df3646ba6"
