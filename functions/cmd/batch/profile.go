package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
)

// CPUProfileEnv switches on a CPU profile of the task:
// ORCHARD_CPUPROFILE=DIR writes DIR/cpu-<execution>-task-<index>-<attempt>.pprof
// when the task ends (read it with go tool pprof). It is off when unset
// (the deployed job never sets it); a task is a short process with no
// port, so the profile is a file rather than functions' pprof listener.
const CPUProfileEnv = "ORCHARD_CPUPROFILE"

// startCPUProfile starts the profile if CPUProfileEnv asks for one; stop
// writes it out.
func startCPUProfile(getenv func(string) string, name string) (stop func(), err error) {
	dir := getenv(CPUProfileEnv)
	if dir == "" {
		return func() {}, nil
	}
	path := filepath.Join(dir, "cpu-"+name+".pprof")
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", CPUProfileEnv, err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: starting the CPU profile: %w", CPUProfileEnv, err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
