package emulators

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/storage"
)

// GCSForTest starts a fake-gcs-server for t and stops it when t ends.
// If the server is not installed it skips t, or fails t under CI.
func GCSForTest(t testing.TB) *GCS {
	t.Helper()
	return GCSForTestWithOptions(t, GCSOptions{})
}

// GCSForTestWithOptions is GCSForTest with options, for instance to publish
// notifications to a Pub/Sub emulator.
func GCSForTestWithOptions(t testing.TB, opts GCSOptions) *GCS {
	t.Helper()
	g, err := StartGCSWithOptions(context.Background(), opts)
	if err != nil {
		unavailable(t, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("fake-gcs-server %s output:\n%s", g.Host, g.proc.out.Lines(tailLines))
		}
		if err := g.Close(); err != nil {
			t.Errorf("close fake-gcs-server: %v", err)
		}
	})
	return g
}

// ClientForTest returns a storage client for g, closed when t ends.
func (g *GCS) ClientForTest(t testing.TB) *storage.Client {
	t.Helper()
	c, err := g.Client(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Setenv sets STORAGE_EMULATOR_HOST to g for the rest of t, for code under
// test that builds its own storage.Client from the environment. Like
// t.Setenv, it cannot be used in parallel tests.
func (g *GCS) Setenv(t testing.TB) {
	t.Helper()
	t.Setenv("STORAGE_EMULATOR_HOST", g.Host)
}

// The per-binary Pub/Sub emulator behind PubSubForTest.
var shared struct {
	mu sync.Mutex
	ps *PubSub // nil until started, or after CloseShared
}

// PubSubForTest returns a handle on this test binary's shared Pub/Sub
// emulator, starting it on first use, with Project set to project. The
// emulator outlives t: use topic and subscription IDs (or a project) unique to
// the test, e.g. from UniqueName. If the emulator died, a new one is started.
// If it is not installed, t is skipped, or failed under CI.
func PubSubForTest(t testing.TB, project string) *PubSub {
	t.Helper()
	if project == "" {
		t.Fatal("emulators.PubSubForTest: empty project")
	}
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.ps != nil && shared.ps.proc.Exited() {
		t.Logf("shared Pub/Sub emulator had died, starting a new one: %v", shared.ps.proc.close())
		shared.ps = nil
	}
	if shared.ps == nil {
		ps, err := StartPubSub(context.Background(), project)
		if err != nil {
			// Not cached: the next test retries, so one slow start on a
			// loaded machine does not fail every later test.
			unavailable(t, err)
		}
		shared.ps = ps
	}
	h := *shared.ps
	h.Project = project
	h.shared = true
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pubsub emulator %s output:\n%s", h.Host, h.proc.out.Lines(tailLines))
		}
	})
	return &h
}

// CloseShared stops the shared Pub/Sub emulator, if one was started. Call it
// from TestMain after m.Run; RunTests does.
func CloseShared() error {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.ps == nil {
		return nil
	}
	err := shared.ps.proc.close()
	shared.ps = nil
	return err
}

// RunTests runs the tests and then stops the shared emulators. Use it as
//
//	func TestMain(m *testing.M) { os.Exit(emulators.RunTests(m)) }
func RunTests(m *testing.M) int {
	code := m.Run()
	if err := CloseShared(); err != nil {
		os.Stderr.WriteString("emulators: " + err.Error() + "\n")
		if code == 0 {
			code = 1
		}
	}
	return code
}

// ClientForTest returns a Pub/Sub client for ps.Project, closed when t ends.
func (ps *PubSub) ClientForTest(t testing.TB) *pubsub.Client {
	t.Helper()
	c, err := ps.Client(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Setenv sets PUBSUB_EMULATOR_HOST to ps (and GOOGLE_CLOUD_PROJECT to
// ps.Project) for the rest of t, for code under test that builds its own
// client from the environment. Like t.Setenv, it cannot be used in parallel
// tests.
func (ps *PubSub) Setenv(t testing.TB) {
	t.Helper()
	t.Setenv("PUBSUB_EMULATOR_HOST", ps.Host)
	t.Setenv("GOOGLE_CLOUD_PROJECT", ps.Project)
}

// InCI reports whether CI is set to a true value (CI=true, as GitHub Actions
// and most CI systems set it, or CI=1).
func InCI() bool {
	ci, err := strconv.ParseBool(os.Getenv("CI"))
	return err == nil && ci
}

// unavailable ends t because an emulator could not start: a skip when it is
// simply not installed on a developer machine, a failure otherwise.
func unavailable(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, ErrNotInstalled) && !InCI() {
		t.Skipf("skipping: %v", err)
	}
	t.Fatalf("emulator unavailable: %v", err)
}

var nameSeq atomic.Uint64

// UniqueName returns a name derived from t's name that is unique within the
// test binary and unlikely to collide across binaries sharing an emulator:
// lowercase letters, digits and hyphens, starting with a letter, at most 63
// characters. That is valid as a bucket name, a Pub/Sub topic or
// subscription ID, and a project ID for the emulators.
func UniqueName(t testing.TB) string {
	var b strings.Builder
	b.WriteString("t-")
	dash := true
	for _, r := range strings.ToLower(t.Name()) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			dash = false
		} else if !dash {
			b.WriteByte('-')
			dash = true
		}
	}
	base := strings.TrimSuffix(b.String(), "-")
	// Bucket names may not contain "google" (nor start with "goog", which
	// the "t-" prefix already rules out).
	base = strings.ReplaceAll(base, "google", "g00gle")
	var rnd [3]byte
	rand.Read(rnd[:])
	suffix := "-" + strconv.FormatUint(nameSeq.Add(1), 10) + "-" + hex.EncodeToString(rnd[:])
	if max := 63 - len(suffix); len(base) > max {
		base = strings.TrimSuffix(base[:max], "-")
	}
	return base + suffix
}
