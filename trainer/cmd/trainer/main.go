// Command trainer trains Orchard's image classifier and writes a model
// directory (model.onnx + model.json + report) that the prediction
// functions load unchanged. It is the entry point of the trainer container
// (Vertex AI custom job) and of local runs.
//
//	trainer train -data DIR|gs://... -out DIR|gs://... [-config FILE] [-set key=value ...]
//	trainer eval -model DIR -data DIR [-corrupt all|name,...]
//	trainer gen-data -out DIR [-classes N -per-class M -size S -seed N]
//	trainer bench [-size S -batch B -steps N]
//	trainer config [-config FILE] [-set key=value ...]   (print the resolved config)
//	trainer compare -out DIR [-registry URI] RUN_OR_VERSION...
//	trainer sweep -spec FILE -data URI -out DIR [-parallel N] [-publish REGISTRY]
//
// On Vertex AI, AIP_MODEL_DIR, AIP_CHECKPOINT_DIR and AIP_TENSORBOARD_LOG_DIR
// are used when the matching flags are not given. Failures exit non-zero
// with one line on stderr.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/logging"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		msg := strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
		fmt.Fprintf(os.Stderr, "trainer: %s\n", msg)
		os.Exit(1)
	}
}

const usage = `usage: trainer <command> [flags]

commands:
  train     train, export ONNX, verify with onnxruntime, write the model directory
  eval      accuracy of a model directory on a folder-per-class dataset, optionally under corruptions
  gen-data  write a small synthetic folder-per-class dataset
  bench     training throughput, im2col vs native convolution
  config    print the resolved configuration
  compare   one HTML page putting runs (directories, gs:// or registry NAME@VERSION) side by side
  sweep     hyperparameter sweep (grid or random) as local trainer processes, best trial to the registry

run "trainer <command> -h" for the command's flags`

// simdWarning says, in one line, that training runs slower than it could
// when the binary was built without GOEXPERIMENT=simd (`make` sets it).
func simdWarning(w io.Writer) {
	if !simdBuild {
		fmt.Fprintln(w, "trainer: warning: built without GOEXPERIMENT=simd: the pure-Go backend runs 2-2.5x slower; rebuild with GOEXPERIMENT=simd (as make does)")
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return flag.ErrHelp
	}
	if args[0] == "train" || args[0] == "bench" {
		simdWarning(stderr)
	}
	// One storage client for the process, made on the first gs:// URI.
	stores := blob.LazyOpener()
	defer stores.Close()
	switch args[0] {
	case "train":
		return cmdTrain(ctx, stores, args[1:], stdout, stderr)
	case "eval":
		return cmdEval(ctx, stores, args[1:], stdout, stderr)
	case "gen-data":
		return cmdGenData(args[1:], stdout, stderr)
	case "bench":
		return cmdBench(ctx, args[1:], stdout, stderr)
	case "config":
		return cmdConfig(args[1:], stdout, stderr)
	case "compare":
		return cmdCompare(ctx, stores, args[1:], stdout, stderr)
	case "sweep":
		return cmdSweep(ctx, stores, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	fmt.Fprintln(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// isTerminal reports whether f is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// newLogger logs human-readable text on a terminal and Cloud Logging JSON
// lines (shared/logging) otherwise.
func newLogger(w io.Writer, terminal bool, level slog.Level) *slog.Logger {
	if terminal {
		return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
	}
	return logging.New(w, logging.WithLevel(level))
}
