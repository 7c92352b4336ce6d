package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/api/iterator"

	"github.com/orchard-mlops/orchard/infra/local/eventarc"
	"github.com/orchard-mlops/orchard/infra/local/stack"
	"github.com/orchard-mlops/orchard/shared/emulators"
	"github.com/orchard-mlops/orchard/shared/model/modeltest"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/proc/proctest"
)

// TestRedrive, on the local stack with the real Pub/Sub emulator: uploads
// arrive while storage is frozen (fake-gcs-server stopped with SIGSTOP) for
// longer than the retry budget, so every event is dead-lettered; `orchard
// deadletters` lists them, `orchard redrive` replays them once storage is
// back, and every upload ends with exactly one result.
func TestRedrive(t *testing.T) {
	if _, err := onnxrt.Find(); err != nil {
		if emulators.InCI() {
			t.Fatalf("onnxruntime is required under CI: %v", err)
		}
		t.Skipf("skipping: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	modelURI := "file://" + modeltest.Dir(t, modeltest.Options{})
	s, err := stack.Start(ctx, stack.Config{
		Project: emulators.UniqueName(t), PubSub: stack.PubSubEmulator, ModelURI: modelURI,
		Bridge:       eventarc.Options{MaxAttempts: 4, MinBackoff: 500 * time.Millisecond, MaxBackoff: time.Second},
		FunctionsEnv: []string{"STORAGE_TIMEOUT_SECONDS=1"},
	})
	if errors.Is(err, emulators.ErrNotInstalled) && !emulators.InCI() {
		t.Skipf("skipping: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t.Setenv("PUBSUB_EMULATOR_HOST", s.PubSubHost)

	// Events arrive while the function is down; storage freezes before it
	// comes back, so the later deliveries time out on storage, past the
	// retry budget.
	if err := s.StopFunctions(); err != nil {
		t.Fatal(err)
	}
	var names []string
	for i := range 5 {
		n := fmt.Sprintf("in/red-%d.jpg", i)
		if err := s.Upload(ctx, n, "image/jpeg", modeltest.JPEG(t, modeltest.Solid(modeltest.Red, 16, 16))); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	// fake-gcs-server publishes the notifications asynchronously: freeze it
	// only once the bridge has them all.
	for s.Bridge.Stats()[stack.RouteUploads].Received < int64(len(names)) {
		if ctx.Err() != nil {
			t.Fatalf("notifications never arrived: %+v", s.Bridge.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	gcs := fakeGCSPID(t)
	if err := syscall.Kill(gcs, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	thawed := false
	thaw := func() {
		if !thawed {
			thawed = true
			syscall.Kill(gcs, syscall.SIGCONT)
		}
	}
	defer thaw()
	if err := s.StartFunctions(ctx, modelURI); err != nil {
		t.Fatal(err)
	}
	for s.Bridge.Stats()[stack.RouteUploads].DeadLettered < int64(len(names)) {
		if ctx.Err() != nil {
			t.Fatalf("not all dead-lettered: %+v", s.Bridge.Stats())
		}
		time.Sleep(100 * time.Millisecond)
	}
	thaw()

	dl := []string{"-project", s.Config.Project, "-subscription", s.Config.DeadLetterTopic, "-wait", "2s"}
	out, err := runCLI(t, append([]string{"deadletters"}, dl...)...)
	if err != nil || !strings.Contains(out, "5 dead-lettered message(s)") {
		t.Fatalf("deadletters: %v\n%s", err, out)
	}
	for _, n := range names {
		if !strings.Contains(out, "gs://"+s.Config.UploadsBucket+"/"+n+"#") {
			t.Errorf("deadletters does not list %s:\n%s", n, out)
		}
	}
	if !strings.Contains(out, "eventarc-"+stack.RouteUploads) || !strings.Contains(out, "  4  ") {
		t.Errorf("deadletters shows no source subscription or attempts:\n%s", out)
	}
	t.Logf("orchard deadletters:\n%s", out)

	out, err = runCLI(t, append([]string{"redrive"}, dl...)...)
	if err != nil || !strings.Contains(out, "5 redriven, 0 left") {
		t.Fatalf("redrive: %v\n%s", err, out)
	}
	if _, err := s.WaitResults(ctx, names, nil); err != nil {
		t.Fatalf("after redrive: %v\nbridge %+v", err, s.Bridge.Stats())
	}
	// Exactly one result object per upload, and nothing left dead.
	var keys []string
	it := s.Storage.Bucket(s.Config.ResultsBucket).Objects(ctx, nil)
	for {
		a, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, a.Name)
	}
	if len(keys) != len(names) {
		t.Errorf("results %v, want one per upload (%d)", keys, len(names))
	}
	if out, err := runCLI(t, append([]string{"deadletters"}, dl...)...); err != nil || !strings.Contains(out, "0 dead-lettered") {
		t.Errorf("after redrive: %v\n%s", err, out)
	}
}

// fakeGCSPID finds the stack's fake-gcs-server among this test's processes.
func fakeGCSPID(t *testing.T) int {
	t.Helper()
	for _, pid := range proctest.Descendants(t, os.Getpid()) {
		comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		if strings.TrimSpace(string(comm)) == "fake-gcs-server" {
			return pid
		}
	}
	t.Fatal("no fake-gcs-server process")
	return 0
}
