package stack

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/orchard-mlops/orchard/infra/local/eventarc"
	"github.com/orchard-mlops/orchard/shared/emulators"
	"github.com/orchard-mlops/orchard/shared/model/modeltest"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/proc/proctest"
)

var (
	binOnce sync.Once
	binDir  string
)

// sharedBinDir is one build directory per test binary, so the functions
// server is linked once.
func sharedBinDir(t *testing.T) string {
	binOnce.Do(func() {
		d, err := os.MkdirTemp("", "orchard-local-test-bin-")
		if err != nil {
			t.Fatal(err)
		}
		binDir = d
	})
	return binDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// needs skips t (or fails it under CI) when a prerequisite is missing.
func needs(t *testing.T) {
	t.Helper()
	if _, err := onnxrt.Find(); err != nil {
		if emulators.InCI() {
			t.Fatalf("onnxruntime is required under CI: %v", err)
		}
		t.Skipf("skipping: %v", err)
	}
}

// startStack starts a stack for t, skipping if fake-gcs-server is missing.
func startStack(t *testing.T, cfg Config) *Stack {
	t.Helper()
	needs(t)
	if cfg.Project == "" {
		cfg.Project = emulators.UniqueName(t)
	}
	cfg.BinDir = sharedBinDir(t)
	if cfg.Bridge.MinBackoff == 0 {
		cfg.Bridge = eventarc.Options{MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	s, err := Start(ctx, cfg)
	if errors.Is(err, emulators.ErrNotInstalled) && !emulators.InCI() {
		t.Skipf("skipping: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("functions server log:\n%s", s.FunctionsLog(40))
		}
		s.Close()
	})
	return s
}

func listening(hostport string) bool {
	c, err := net.DialTimeout("tcp", hostport, time.Second)
	if err == nil {
		c.Close()
		return true
	}
	return false
}

// TestEndToEndPredictOnUpload: upload → fake-gcs-server notification →
// Pub/Sub → bridge → real functions server (colour model) → results bucket,
// with each Pub/Sub backend; then Close leaves no process or port behind.
func TestEndToEndPredictOnUpload(t *testing.T) {
	for _, backend := range []string{PubSubEmulator, PubSubPstest} {
		t.Run(backend, func(t *testing.T) {
			before := map[int]bool{}
			for _, p := range proctest.Children(t, os.Getpid()) {
				before[p] = true
			}
			dir := modeltest.Dir(t, modeltest.Options{})
			s := startStack(t, Config{ModelURI: "file://" + dir, PubSub: backend})
			if s.PubSubBackend != backend {
				t.Fatalf("backend %s, want %s", s.PubSubBackend, backend)
			}
			uploads := map[string][]byte{
				"red/apple 1.jpg":    modeltest.JPEG(t, modeltest.Solid(modeltest.Red, 40, 30)),
				"green/leaf.jpg":     modeltest.JPEG(t, modeltest.Solid(modeltest.Green, 16, 16)),
				"blue/deep/sky.png":  modeltest.PNG(t, modeltest.Solid(modeltest.Blue, 20, 20)),
				"red/second red.jpg": modeltest.JPEG(t, modeltest.Solid(modeltest.Red, 8, 8)),
			}
			ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
			defer cancel()
			var names []string
			for n, data := range uploads {
				ct := "image/jpeg"
				if strings.HasSuffix(n, ".png") {
					ct = "image/png"
				}
				if err := s.Upload(ctx, n, ct, data); err != nil {
					t.Fatal(err)
				}
				names = append(names, n)
			}
			// Not an image: PredictOnUpload skips it, so it has no result.
			if err := s.Upload(ctx, "notes.txt", "text/plain", []byte("hello")); err != nil {
				t.Fatal(err)
			}
			res, err := s.WaitResults(ctx, names, nil)
			if err != nil {
				t.Fatalf("%v\nbridge stats: %+v", err, s.Bridge.Stats())
			}
			for _, n := range names {
				r := res[n]
				want := n[:strings.IndexByte(n, '/')]
				if r.Label != want || r.Error != "" || r.Score < 0.9 || r.Bucket != s.Config.UploadsBucket || r.Name != n || r.Generation == 0 {
					t.Errorf("%s: result %+v, want label %s", n, r, want)
				}
				if r.Model == nil || r.Model.Name != "colours" {
					t.Errorf("%s: model %+v", n, r.Model)
				}
			}
			// A result is written before the function answers the bridge,
			// so the bridge may count the delivery a moment after it.
			st := s.Bridge.Stats()[RouteUploads]
			for wait := time.Now().Add(30 * time.Second); st.Delivered < int64(len(names)) && time.Now().Before(wait); {
				time.Sleep(50 * time.Millisecond)
				st = s.Bridge.Stats()[RouteUploads]
			}
			if st.Delivered < int64(len(names)) || st.DeadLettered != 0 {
				t.Errorf("bridge stats %+v", st)
			}
			// Each result was also published to the predictions topic.
			published := map[string]string{}
			var mu sync.Mutex
			pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
			err = s.PubSub.Subscriber(s.Subscription(s.Config.PredictionsTopic)).Receive(pctx, func(_ context.Context, m *pubsub.Message) {
				m.Ack()
				var r Result
				mu.Lock()
				defer mu.Unlock()
				if json.Unmarshal(m.Data, &r) == nil {
					published[r.Name] = r.Label
				}
				if len(published) >= len(names) {
					pcancel()
				}
			})
			pcancel()
			for _, n := range names {
				if published[n] != res[n].Label {
					t.Errorf("%s: published prediction %q, result %q (receive: %v)", n, published[n], res[n].Label, err)
				}
			}

			// Close stops every child process group and frees every port.
			fpid := s.FunctionsPID()
			var started []int
			for _, p := range proctest.Children(t, os.Getpid()) {
				if !before[p] {
					started = append(started, p)
				}
			}
			if fpid == 0 || len(started) == 0 {
				t.Fatalf("functions pid %d, children %v", fpid, started)
			}
			hosts := []string{s.GCSHost, s.PubSubHost, strings.TrimPrefix(s.FunctionsURL, "http://")}
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			for _, p := range started {
				if proctest.Alive(p) {
					t.Errorf("child process %d is still running after Close", p)
				}
			}
			for _, h := range hosts {
				if listening(h) {
					t.Errorf("%s still accepts connections after Close", h)
				}
			}
		})
	}
}

func TestBuildOutputHelpers(t *testing.T) {
	var c lineCounter
	for _, chunk := range []string{"github.com/a/b\ngithub.com/a/", "c\n# github.com/a/c\nc.go:1: bad\n", "partial"} {
		c.Write([]byte(chunk))
	}
	// Every line but the "# pkg" header counts (a compiler message only
	// appears when the build fails); the partial last line does not.
	if got := c.count(); got != 3 {
		t.Errorf("count = %d, want 3", got)
	}
	if got := oneLine("a\n\n  b  \nc\n", 2); got != "b | c" {
		t.Errorf("oneLine = %q", got)
	}
	if got := oneLine("\n", 3); got != "no output" {
		t.Errorf("oneLine(empty) = %q", got)
	}
}
