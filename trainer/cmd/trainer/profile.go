package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strings"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/errlist"
)

// profiles are the -cpuprofile, -memprofile and -trace files of a
// training run. They are written to a local temporary directory while the
// run lasts, then copied into the model directory (so on Vertex AI they
// land in AIP_MODEL_DIR with the model, and a sweep's trials each keep
// theirs).
type profiles struct{ cpu, mem, trace string }

func (p *profiles) register(fs *flag.FlagSet) {
	fs.StringVar(&p.cpu, "cpuprofile", "", "write a CPU profile under this name into the model directory (read it with go tool pprof)")
	fs.StringVar(&p.mem, "memprofile", "", "write a heap profile at the end of the run under this name into the model directory (go tool pprof -sample_index=alloc_space)")
	fs.StringVar(&p.trace, "trace", "", "write an execution trace under this name into the model directory (read it with go tool trace)")
}

func (p *profiles) any() bool { return p.cpu != "" || p.mem != "" || p.trace != "" }

func checkProfileName(flagName, name string) error {
	if name == "" {
		return nil
	}
	if path.IsAbs(name) || strings.Contains(name, "\\") || path.Clean(name) != name || strings.HasPrefix(name, "..") {
		return fmt.Errorf("-%s %q: give a relative name inside the model directory, such as %s.pprof", flagName, name, flagName)
	}
	return nil
}

// start begins the CPU profile and the trace. The returned stop ends them,
// writes the heap profile and copies the files into modelDir; it must be
// called once, whether the run succeeded or not.
func (p *profiles) start(stores *blob.Opener) (stop func(ctx context.Context, modelDir string) error, err error) {
	if !p.any() {
		return func(context.Context, string) error { return nil }, nil
	}
	if err := errlist.Join(checkProfileName("cpuprofile", p.cpu), checkProfileName("memprofile", p.mem),
		checkProfileName("trace", p.trace)); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "orchard-profile-")
	if err != nil {
		return nil, fmt.Errorf("profiles: %w", err)
	}
	local := func(name string) string {
		return filepath.Join(tmp, filepath.FromSlash(strings.ReplaceAll(name, "/", "_")))
	}
	var cpuF, traceF *os.File
	fail := func(err error) (func(context.Context, string) error, error) {
		if cpuF != nil {
			pprof.StopCPUProfile()
			cpuF.Close()
		}
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("profiles: %w", err)
	}
	if p.cpu != "" {
		if cpuF, err = os.Create(local(p.cpu)); err != nil {
			return fail(err)
		}
		if err := pprof.StartCPUProfile(cpuF); err != nil {
			return fail(err)
		}
	}
	if p.trace != "" {
		if traceF, err = os.Create(local(p.trace)); err != nil {
			return fail(err)
		}
		if err := trace.Start(traceF); err != nil {
			traceF.Close()
			return fail(err)
		}
	}
	return func(ctx context.Context, modelDir string) error {
		defer os.RemoveAll(tmp)
		var errs []error
		if cpuF != nil {
			pprof.StopCPUProfile()
			errs = append(errs, cpuF.Close())
		}
		if traceF != nil {
			trace.Stop()
			errs = append(errs, traceF.Close())
		}
		if p.mem != "" {
			errs = append(errs, writeHeapProfile(local(p.mem)))
		}
		if err := errlist.Join(errs...); err != nil {
			return fmt.Errorf("profiles: %w", err)
		}
		st, err := stores.Open(ctx, modelDir)
		if err != nil {
			return fmt.Errorf("profiles: %w", err)
		}
		for _, name := range []string{p.cpu, p.mem, p.trace} {
			if name == "" {
				continue
			}
			b, err := os.ReadFile(local(name))
			if err != nil {
				return fmt.Errorf("profiles: %w", err)
			}
			if _, err := st.Write(ctx, name, b, blob.WriteOptions{ContentType: "application/octet-stream"}); err != nil {
				return fmt.Errorf("profiles: uploading %s: %w", name, err)
			}
		}
		return nil
	}, nil
}

func writeHeapProfile(file string) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	runtime.GC() // up-to-date statistics of what is still live
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
