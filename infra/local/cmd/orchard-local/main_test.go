package main

import (
	"bufio"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orchard-mlops/orchard/shared/emulators"
	"github.com/orchard-mlops/orchard/shared/model/modeltest"
	"github.com/orchard-mlops/orchard/shared/ort"
	"github.com/orchard-mlops/orchard/shared/proc/proctest"
)

func TestUsage(t *testing.T) {
	var out, errb strings.Builder
	if code := run(context.Background(), nil, &out, &errb); code != 2 || !strings.Contains(errb.String(), "usage") {
		t.Errorf("no args: code %d, stderr %q", code, errb.String())
	}
	errb.Reset()
	if code := run(context.Background(), []string{"nope"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "unknown command") {
		t.Errorf("unknown: code %d, stderr %q", code, errb.String())
	}
	errb.Reset()
	if code := run(context.Background(), []string{"demo", "-train=none"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "-model") {
		t.Errorf("demo -train=none without -model: code %d, stderr %q", code, errb.String())
	}
}

// TestUpStopsEverythingOnSIGINT runs the real binary: `up` with a model
// starts fake-gcs-server, the Pub/Sub emulator and the functions server;
// SIGINT must stop all of them and exit 0.
func TestUpStopsEverythingOnSIGINT(t *testing.T) {
	if _, err := ort.Find(); err != nil {
		if emulators.InCI() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	if g, err := emulators.StartGCS(t.Context()); err != nil {
		if errors.Is(err, emulators.ErrNotInstalled) && !emulators.InCI() {
			t.Skip(err)
		}
		t.Fatal(err)
	} else {
		g.Close()
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "orchard-local")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	model := modeltest.Dir(t, modeltest.Options{})
	cmd := exec.Command(bin, "up", "-model", model, "-project", emulators.UniqueName(t), "-bin-dir", filepath.Join(dir, "bin"))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		// On failure: interrupt (so it cleans up), then kill.
		cmd.Process.Signal(syscall.SIGINT)
		t := time.AfterFunc(20*time.Second, func() { cmd.Process.Kill() })
		cmd.Wait()
		t.Stop()
	}()
	lines := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var out strings.Builder
	deadline := time.After(5 * time.Minute) // builds the functions server; slow on a loaded 2-core runner
wait:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("exited before ready:\n%s\nstderr:\n%s", out.String(), stderr.String())
			}
			out.WriteString(l + "\n")
			if strings.Contains(l, "Ctrl-C stops everything") {
				break wait
			}
		case <-deadline:
			t.Fatalf("not ready in 5m:\n%s\nstderr:\n%s", out.String(), stderr.String())
		}
	}
	time.Sleep(500 * time.Millisecond) // the export lines follow
	kids := proctest.Descendants(t, cmd.Process.Pid)
	if len(kids) < 3 {
		t.Fatalf("want fake-gcs-server, the emulator and the functions server below orchard-local; got %v", kids)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		for l := range lines {
			out.WriteString(l + "\n")
		}
		done <- cmd.Wait()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit: %v\nstderr:\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("did not exit within 30s of SIGINT")
	}
	for _, p := range kids {
		if proctest.Alive(p) {
			t.Errorf("process %d still running after orchard-local exited", p)
		}
	}
	for _, want := range []string{"export STORAGE_EMULATOR_HOST=127.0.0.1:", "export PUBSUB_EMULATOR_HOST=127.0.0.1:", "/Predict", "stopped"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
