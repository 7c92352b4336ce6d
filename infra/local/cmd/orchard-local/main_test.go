package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/emulators"
	"github.com/orchard-mlops/orchard/shared/model/modeltest"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
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

// TestUpStopsEverythingOnSIGINT runs the real binary: `up` with a start-up
// model (-seed DIR) starts fake-gcs-server, the Pub/Sub emulator and the
// functions server, and serves that model through the registry as soon as
// it prints its banner; an upload shows in the live log; SIGINT must stop
// everything and exit 0.
func TestUpStopsEverythingOnSIGINT(t *testing.T) {
	if _, err := onnxrt.Find(); err != nil {
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
	cmd := exec.Command(bin, "up", "-seed", model, "-project", emulators.UniqueName(t), "-bin-dir", filepath.Join(dir, "bin"))
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
			if strings.Contains(l, "Live log") {
				break wait
			}
		case <-deadline:
			t.Fatalf("not ready in 5m:\n%s\nstderr:\n%s", out.String(), stderr.String())
		}
	}
	// The start-up model is in production when the banner is printed.
	predictURL := regexp.MustCompile(`http://127\.0\.0\.1:\d+/Predict`).FindString(out.String())
	jpg := modeltest.JPEG(t, modeltest.Solid(modeltest.Red, 20, 20))
	resp, err := http.Post(predictURL, "image/jpeg", bytes.NewReader(jpg))
	if err != nil {
		t.Fatalf("Predict at %q: %v\n%s", predictURL, err, out.String())
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"label":"red"`) {
		t.Fatalf("Predict right after the banner: %d %s", resp.StatusCode, body)
	}
	// An upload's result appears in the live log.
	gcs := regexp.MustCompile(`export STORAGE_EMULATOR_HOST=(\S+)`).FindStringSubmatch(out.String())
	if gcs == nil {
		t.Fatalf("no STORAGE_EMULATOR_HOST in\n%s", out.String())
	}
	up, err := http.Post("http://"+gcs[1]+"/upload/storage/v1/b/orchard-uploads/o?uploadType=media&name=red/1.jpg", "image/jpeg", bytes.NewReader(jpg))
	if err != nil {
		t.Fatal(err)
	}
	up.Body.Close()
	logged := time.After(2 * time.Minute)
follow:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("exited:\n%s", out.String())
			}
			out.WriteString(l + "\n")
			if strings.Contains(l, "upload gs://orchard-uploads/red/1.jpg → red") {
				break follow
			}
		case <-logged:
			t.Fatalf("the upload's result never showed in the live log:\n%s\nstderr:\n%s", out.String(), stderr.String())
		}
	}
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

func TestNewestSavedModel(t *testing.T) {
	dir := t.TempDir()
	save := func(run, name string) string {
		p := filepath.Join(dir, run, "model")
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		st, err := blob.NewDir(p)
		if err != nil {
			t.Fatal(err)
		}
		modeltest.Save(t, modeltest.Colour(t, modeltest.Options{Name: name}), st)
		return p
	}
	older := save("20260101-100000", "fruits")
	save("20260102-100000", "other")                                   // newer, but another model
	os.MkdirAll(filepath.Join(dir, "20260103-100000", "model"), 0o755) // a run that saved nothing
	got, err := newestSavedModel(t.Context(), dir, "fruits")
	if err != nil || got != older {
		t.Errorf("newestSavedModel = %q, %v; want %q", got, err, older)
	}
	if got, err := newestSavedModel(t.Context(), filepath.Join(dir, "nope"), "fruits"); got != "" || err != nil {
		t.Errorf("missing folder: %q, %v", got, err)
	}
}
