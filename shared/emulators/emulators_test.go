package emulators

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"

	"github.com/orchard-mlops/orchard/shared/proc/proctest"
)

func TestMain(m *testing.M) { os.Exit(RunTests(m)) }

func writeObject(ctx context.Context, o *storage.ObjectHandle, data []byte, chunkSize int) error {
	w := o.If(storage.Conditions{DoesNotExist: true}).NewWriter(ctx)
	w.ChunkSize = chunkSize
	w.ContentType = "application/octet-stream"
	if _, err := w.Write(data); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

func readObject(ctx context.Context, o *storage.ObjectHandle) ([]byte, error) {
	r, err := o.NewReader(ctx)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

func TestGCS(t *testing.T) {
	// Clients must not depend on the process-global variable: point it at a
	// dead port so any request that followed it would fail.
	t.Setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:1")
	g := GCSForTest(t)
	ctx := t.Context()

	if want := regexp.MustCompile(`^127\.0\.0\.1:\d+$`); !want.MatchString(g.Host) {
		t.Errorf("Host = %q, want 127.0.0.1:PORT", g.Host)
	}
	if g.URL != "http://"+g.Host {
		t.Errorf("URL = %q, want http://%s", g.URL, g.Host)
	}

	client := g.ClientForTest(t)
	bucket := UniqueName(t)
	if err := client.Bucket(bucket).Create(ctx, "test-project", nil); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	obj := client.Bucket(bucket).Object("dir/photo 1.jpg") // space: exercises path escaping
	want := []byte("hello orchard")
	if err := writeObject(ctx, obj, want, 0); err != nil {
		t.Fatalf("first write with DoesNotExist: %v", err)
	}

	// The default reader uses the XML API path, routed by Host; this is what
	// fails when the public host is wrong.
	got, err := readObject(ctx, obj)
	if err != nil {
		t.Fatalf("read (XML API): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("read (XML API) = %q, want %q", got, want)
	}

	jsonClient, err := g.Client(ctx, storage.WithJSONReads())
	if err != nil {
		t.Fatal(err)
	}
	defer jsonClient.Close()
	got, err = readObject(ctx, jsonClient.Bucket(bucket).Object(obj.ObjectName()))
	if err != nil {
		t.Fatalf("read (JSON API): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("read (JSON API) = %q, want %q", got, want)
	}

	err = writeObject(ctx, obj, []byte("second"), 0)
	var gerr *googleapi.Error
	if !errors.As(err, &gerr) || gerr.Code != 412 {
		t.Errorf("second write with DoesNotExist: err = %v, want HTTP 412", err)
	}

	// Larger than one chunk: a resumable upload, whose follow-up requests go
	// to the Location the server returns.
	big := bytes.Repeat([]byte("0123456789abcdef"), 40<<10) // 640 KiB
	bigObj := client.Bucket(bucket).Object("big.bin")
	if err := writeObject(ctx, bigObj, big, 256<<10); err != nil {
		t.Fatalf("resumable write: %v", err)
	}
	got, err = readObject(ctx, bigObj)
	if err != nil {
		t.Fatalf("read resumable upload: %v", err)
	}
	if !bytes.Equal(got, big) {
		t.Errorf("resumable upload read back %d bytes, want %d identical bytes", len(got), len(big))
	}

	var names []string
	it := client.Bucket(bucket).Objects(ctx, nil)
	for {
		a, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		names = append(names, a.Name)
	}
	if fmt.Sprint(names) != "[big.bin dir/photo 1.jpg]" {
		t.Errorf("list = %q", names)
	}
}

func TestGCSSetenv(t *testing.T) {
	g := GCSForTest(t)
	g.Setenv(t)
	// What code under test does: a plain client, configured by the environment.
	c, err := storage.NewClient(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	bucket := UniqueName(t)
	if err := c.Bucket(bucket).Create(t.Context(), "p", nil); err != nil {
		t.Fatalf("create bucket via STORAGE_EMULATOR_HOST: %v", err)
	}
	if err := writeObject(t.Context(), c.Bucket(bucket).Object("o"), []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	if got, err := readObject(t.Context(), c.Bucket(bucket).Object("o")); err != nil || string(got) != "x" {
		t.Errorf("read via STORAGE_EMULATOR_HOST = %q, %v", got, err)
	}
}

// createTopicAndSub creates a topic and a pull subscription with unique IDs.
func createTopicAndSub(t *testing.T, ps *PubSub, c *pubsub.Client) (topicID, subID string) {
	t.Helper()
	topicID, subID = UniqueName(t), UniqueName(t)
	ctx := t.Context()
	if _, err := c.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: ps.TopicName(topicID)}); err != nil {
		t.Fatalf("create topic: %v", err)
	}
	if _, err := c.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name:               ps.SubscriptionName(subID),
		Topic:              ps.TopicName(topicID),
		AckDeadlineSeconds: 10,
	}); err != nil {
		t.Fatalf("create subscription: %v", err)
	}
	return topicID, subID
}

// receiveOne pulls one message (acking it) or fails after a timeout.
func receiveOne(t *testing.T, c *pubsub.Client, subID string) *pubsub.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var got *pubsub.Message
	err := c.Subscriber(subID).Receive(ctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		if got == nil {
			got = m
		}
		cancel()
	})
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	if got == nil {
		t.Fatalf("no message on %s within the timeout", subID)
	}
	return got
}

func TestPubSub(t *testing.T) {
	t.Setenv("PUBSUB_EMULATOR_HOST", "127.0.0.1:1") // must be ignored, as above
	ps := PubSubForTest(t, UniqueName(t))
	c := ps.ClientForTest(t)
	topicID, subID := createTopicAndSub(t, ps, c)

	pub := c.Publisher(topicID)
	defer pub.Stop()
	id, err := pub.Publish(t.Context(), &pubsub.Message{
		Data:       []byte("ping"),
		Attributes: map[string]string{"k": "v"},
	}).Get(t.Context())
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	m := receiveOne(t, c, subID)
	if m.ID != id || string(m.Data) != "ping" || m.Attributes["k"] != "v" {
		t.Errorf("received id=%s data=%q attrs=%v, want id=%s data=ping attrs=map[k:v]", m.ID, m.Data, m.Attributes, id)
	}
}

func TestPubSubShared(t *testing.T) {
	a := PubSubForTest(t, "project-a")
	b := PubSubForTest(t, "project-b")
	if a.proc != b.proc || a.Host != b.Host {
		t.Errorf("PubSubForTest started two emulators (%s, %s), want one shared", a.Host, b.Host)
	}
	if a.Project != "project-a" || b.Project != "project-b" {
		t.Errorf("projects = %q, %q", a.Project, b.Project)
	}
	if err := a.Close(); err != nil || a.proc.Exited() {
		t.Errorf("Close on a shared handle: err=%v exited=%v; want no-op", err, a.proc.Exited())
	}
}

func TestPubSubSetenv(t *testing.T) {
	ps := PubSubForTest(t, UniqueName(t))
	ps.Setenv(t)
	c, err := pubsub.NewClient(t.Context(), os.Getenv("GOOGLE_CLOUD_PROJECT"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.TopicAdminClient.CreateTopic(t.Context(), &pubsubpb.Topic{Name: ps.TopicName(UniqueName(t))}); err != nil {
		t.Errorf("create topic via PUBSUB_EMULATOR_HOST: %v", err)
	}
}

func TestGCSNotificationsReachPubSub(t *testing.T) {
	ps := PubSubForTest(t, UniqueName(t))
	c := ps.ClientForTest(t)
	topicID, subID := createTopicAndSub(t, ps, c)

	g := GCSForTestWithOptions(t, GCSOptions{Notify: &GCSNotify{
		PubSubHost: ps.Host,
		Project:    ps.Project,
		Topic:      topicID,
	}})
	sc := g.ClientForTest(t)
	bucket := UniqueName(t)
	if err := sc.Bucket(bucket).Create(t.Context(), "p", nil); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	if err := writeObject(t.Context(), sc.Bucket(bucket).Object("in/apple.jpg"), []byte("jpeg"), 0); err != nil {
		t.Fatalf("write: %v", err)
	}

	m := receiveOne(t, c, subID)
	for k, want := range map[string]string{
		"bucketId":      bucket,
		"objectId":      "in/apple.jpg",
		"eventType":     "OBJECT_FINALIZE",
		"payloadFormat": "JSON_API_V1",
	} {
		if got := m.Attributes[k]; got != want {
			t.Errorf("attribute %s = %q, want %q", k, got, want)
		}
	}
	if g, err := strconv.ParseInt(m.Attributes["objectGeneration"], 10, 64); err != nil || g <= 0 {
		t.Errorf("objectGeneration = %q, want a positive integer", m.Attributes["objectGeneration"])
	}
	var obj struct{ Name, Bucket, Size string }
	if err := json.Unmarshal(m.Data, &obj); err != nil {
		t.Fatalf("data is not object JSON: %v: %s", err, m.Data)
	}
	if obj.Name != "in/apple.jpg" || obj.Bucket != bucket || obj.Size != "4" {
		t.Errorf("data = %s", m.Data)
	}
}

func TestCloseStopsProcessGroup(t *testing.T) {
	t.Run("gcs", func(t *testing.T) {
		g, err := StartGCS(t.Context())
		if err != nil {
			unavailable(t, err)
		}
		pid := g.proc.PID()
		if proctest.GroupGone(pid) {
			t.Fatalf("process %d not running before Close", pid)
		}
		if err := g.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if !proctest.GroupGone(pid) {
			t.Errorf("process group %d still exists after Close", pid)
		}
		if err := g.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
	t.Run("pubsub", func(t *testing.T) {
		ps, err := StartPubSub(t.Context(), "p")
		if err != nil {
			unavailable(t, err)
		}
		pid := ps.proc.PID()
		dir := ps.proc.dir
		// The JVM must really be the group's member: the start script execs it.
		if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && strings.TrimSpace(string(comm)) != "java" {
			t.Logf("emulator process %d is %q", pid, strings.TrimSpace(string(comm)))
		}
		if err := ps.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if !proctest.GroupGone(pid) {
			t.Errorf("process group %d still exists after Close", pid)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("temp dir %s not removed: %v", dir, err)
		}
	})
}

func TestCloseReportsEarlyDeath(t *testing.T) {
	g, err := StartGCS(t.Context())
	if err != nil {
		unavailable(t, err)
	}
	syscall.Kill(g.proc.PID(), syscall.SIGKILL)
	<-g.proc.Done()
	if err := g.Close(); err == nil || !strings.Contains(err.Error(), "exited before Close") {
		t.Errorf("Close after crash = %v, want an 'exited before Close' error", err)
	}
}

// occupiedPort returns a port that a listener holds for the rest of the test.
func occupiedPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

func TestStolenPortIsDetected(t *testing.T) {
	t.Run("gcs", func(t *testing.T) {
		bin, err := findFakeGCSServer()
		if err != nil {
			unavailable(t, err)
		}
		_, err = startGCSOnPort(t.Context(), bin, occupiedPort(t), GCSOptions{})
		if !errors.Is(err, errBind) {
			t.Errorf("start on occupied port: err = %v, want errBind", err)
		}
	})
	t.Run("pubsub", func(t *testing.T) {
		bin, err := findPubSubEmulator()
		if err != nil {
			unavailable(t, err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), pubsubStartTimeout)
		defer cancel()
		// The JVM stays up after a failed bind; only its log says so.
		_, err = startPubSubOnPort(ctx, bin, occupiedPort(t), "p")
		if !errors.Is(err, errBind) {
			t.Errorf("start on occupied port: err = %v, want errBind", err)
		}
	})
}

func TestNotInstalled(t *testing.T) {
	t.Setenv("FAKE_GCS_SERVER", "/nonexistent/fake-gcs-server")
	if _, err := StartGCS(t.Context()); err == nil || errors.Is(err, ErrNotInstalled) {
		// An explicit path that is wrong is a configuration error, not a
		// reason to skip.
		t.Errorf("FAKE_GCS_SERVER pointing nowhere: err = %v, want a non-ErrNotInstalled error", err)
	}
	t.Setenv("FAKE_GCS_SERVER", "")
	t.Setenv("PATH", t.TempDir())
	t.Setenv("GOBIN", "")
	t.Setenv("GOPATH", t.TempDir())
	if _, err := StartGCS(t.Context()); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("no binary anywhere: err = %v, want ErrNotInstalled", err)
	}
	// A Go binary from another module is refused, and reported as such.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOBIN", t.TempDir())
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	fake := os.Getenv("GOBIN") + "/fake-gcs-server"
	if err := os.WriteFile(fake, data, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = StartGCS(t.Context())
	if !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), fake) {
		t.Errorf("wrong binary: err = %v, want ErrNotInstalled naming %s", err, fake)
	}
}

// recordingTB captures how unavailable ends a test. Unlike testing.T, its
// Skipf and Fatalf return, so only the first call counts.
type recordingTB struct {
	testing.TB
	ended string
}

func (r *recordingTB) Helper() {}
func (r *recordingTB) Skipf(format string, args ...any) {
	if r.ended == "" {
		r.ended = "skip: " + fmt.Sprintf(format, args...)
	}
}
func (r *recordingTB) Fatalf(format string, args ...any) {
	if r.ended == "" {
		r.ended = "fatal: " + fmt.Sprintf(format, args...)
	}
}

func TestUnavailable(t *testing.T) {
	notInstalled := fmt.Errorf("%w: fake-gcs-server not found; %s", ErrNotInstalled, installHint)
	crashed := errors.New("fake-gcs-server exited before it was ready")
	for _, tc := range []struct {
		ci   string
		err  error
		want string // prefix of the recorded outcome
	}{
		{"", notInstalled, "skip: "},
		{"false", notInstalled, "skip: "},
		{"true", notInstalled, "fatal: "},
		{"1", notInstalled, "fatal: "},
		{"", crashed, "fatal: "},
		{"true", crashed, "fatal: "},
	} {
		t.Run(fmt.Sprintf("CI=%q/%v", tc.ci, errors.Is(tc.err, ErrNotInstalled)), func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			r := &recordingTB{TB: t}
			unavailable(r, tc.err)
			if !strings.HasPrefix(r.ended, tc.want) {
				t.Errorf("outcome %q, want prefix %q", r.ended, tc.want)
			}
			if errors.Is(tc.err, ErrNotInstalled) && !strings.Contains(r.ended, ".ci/install-emulators.sh") {
				t.Errorf("message %q does not name the install script", r.ended)
			}
		})
	}
}

func TestUniqueName(t *testing.T) {
	valid := regexp.MustCompile(`^[a-z][a-z0-9-]{1,61}[a-z0-9]$`)
	seen := map[string]bool{}
	for _, name := range []string{
		"plain",
		"With/Sub Test#01",
		"google_cloud",
		strings.Repeat("very-long-name-", 10),
		"___",
	} {
		t.Run(name, func(t *testing.T) {
			got := UniqueName(t)
			if !valid.MatchString(got) || strings.Contains(got, "google") || strings.Contains(got, "--") {
				t.Errorf("UniqueName = %q: not a valid bucket/topic name", got)
			}
			if seen[got] {
				t.Errorf("UniqueName = %q twice", got)
			}
			seen[got] = true
		})
	}
}
