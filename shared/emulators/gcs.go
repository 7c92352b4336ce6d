package emulators

import (
	"context"
	"debug/buildinfo"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/storage"
	"google.golang.org/api/option"

	"github.com/orchard-mlops/orchard/shared/proc"
)

// FakeGCSServerVersion is the fake-gcs-server release this package is tested
// with. Behaviour the tests rely on (public-host routing, preconditions,
// notification format) differs between releases, so others are refused.
const FakeGCSServerVersion = "v1.56.1"

const fakeGCSModule = "github.com/fsouza/fake-gcs-server"

// gcsStartTimeout applies when StartGCS's context has no deadline. The server
// is usually ready in 0.2 s.
const gcsStartTimeout = 15 * time.Second

// GCSOptions configures StartGCSWithOptions.
type GCSOptions struct {
	// Notify, if set, makes fake-gcs-server publish Cloud Storage
	// notifications to a Pub/Sub emulator.
	Notify *GCSNotify
}

// GCSNotify makes fake-gcs-server publish a message to a Pub/Sub topic for
// object changes, in the Cloud Storage Pub/Sub notification format
// (attributes bucketId, objectId, objectGeneration, eventType such as
// OBJECT_FINALIZE, eventTime, payloadFormat JSON_API_V1; data is the object
// resource as JSON). It is not a CloudEvent: converting it into what Eventarc
// would deliver is the local bridge's job. An overwrite publishes
// OBJECT_DELETE and then OBJECT_FINALIZE.
type GCSNotify struct {
	// PubSubHost is the emulator's host:port, e.g. PubSub.Host.
	PubSubHost string
	// Project and Topic name the topic (an ID, not a full name). The topic
	// must exist before the first object change: fake-gcs-server does not
	// create it, and logs failed publishes rather than failing the write.
	Project string
	Topic   string
	// Events lists which changes to publish: "finalize", "delete",
	// "metadataUpdate", "archive". Empty means finalize only.
	Events []string
	// Bucket and ObjectPrefix, if set, restrict notifications to one bucket
	// and to object names with the prefix.
	Bucket       string
	ObjectPrefix string
}

// GCS is a running fake-gcs-server.
type GCS struct {
	// Host is "127.0.0.1:PORT", the value STORAGE_EMULATOR_HOST would take.
	Host string
	// URL is "http://127.0.0.1:PORT".
	URL string

	proc *process
}

// StartGCS starts fake-gcs-server with an in-memory backend on a free
// loopback port and waits until it serves. ctx bounds the startup only (15 s
// if it has no deadline); the server runs until Close.
func StartGCS(ctx context.Context) (*GCS, error) {
	return StartGCSWithOptions(ctx, GCSOptions{})
}

// StartGCSWithOptions is StartGCS with options.
func StartGCSWithOptions(ctx context.Context, opts GCSOptions) (*GCS, error) {
	if n := opts.Notify; n != nil && (n.PubSubHost == "" || n.Project == "" || n.Topic == "") {
		return nil, errors.New("start fake-gcs-server: GCSNotify needs PubSubHost, Project and Topic")
	}
	bin, err := findFakeGCSServer()
	if err != nil {
		return nil, err
	}
	ctx, cancel := withStartTimeout(ctx, gcsStartTimeout)
	defer cancel()
	g, err := startWithRetry(ctx, func(ctx context.Context, port int) (*GCS, error) {
		return startGCSOnPort(ctx, bin, port, opts)
	})
	if err != nil {
		return nil, fmt.Errorf("start fake-gcs-server: %w", err)
	}
	return g, nil
}

func startGCSOnPort(ctx context.Context, bin string, port int, opts GCSOptions) (*GCS, error) {
	host := "127.0.0.1:" + strconv.Itoa(port)
	args := []string{
		"-scheme", "http",
		"-host", "127.0.0.1",
		"-port", strconv.Itoa(port),
		// The Go client downloads over the XML API path (/BUCKET/OBJECT), which
		// fake-gcs-server routes by comparing the Host header with its public
		// host. With the default (storage.googleapis.com), uploads and lists
		// work but every download fails with "object doesn't exist".
		"-public-host", host,
		"-backend", "memory",
		"-log-level", "info",
	}
	// fake-gcs-server reads FAKE_GCS_* variables as defaults for flags we do
	// not pass (seed data, event settings, external URL): a developer's shell
	// must not leak into tests. The emulator-host variables would point its
	// own Pub/Sub client somewhere else.
	drop := []string{"FAKE_GCS_", "STORAGE_EMULATOR_HOST=", "PUBSUB_EMULATOR_HOST="}
	var extra []string
	if n := opts.Notify; n != nil {
		args = append(args,
			"-event.pubsub-project-id", n.Project,
			"-event.pubsub-topic", n.Topic,
		)
		if len(n.Events) > 0 {
			args = append(args, "-event.list", strings.Join(n.Events, ","))
		}
		if n.Bucket != "" {
			args = append(args, "-event.bucket", n.Bucket)
		}
		if n.ObjectPrefix != "" {
			args = append(args, "-event.object-prefix", n.ObjectPrefix)
		}
		// Its Pub/Sub client only talks to an emulator through this variable.
		extra = append(extra, "PUBSUB_EMULATOR_HOST="+n.PubSubHost)
	}

	p, err := startProcess("fake-gcs-server", bin, args, proc.Env(drop, extra...), os.TempDir())
	if err != nil {
		return nil, err
	}
	g := &GCS{Host: host, URL: "http://" + host, proc: p}
	err = p.waitReady(ctx, readiness{
		marker:      "server started at http://" + host,
		bindFailure: []string{"address already in use"},
		probe:       g.probe,
	})
	if err != nil {
		p.close()
		return nil, err
	}
	return g, nil
}

// probe lists buckets through the JSON API.
func (g *GCS) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.URL+"/storage/v1/b?project=probe", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /storage/v1/b: %s", resp.Status)
	}
	return nil
}

// ClientOptions point a Cloud Storage client at this server. The endpoint
// also determines the host of XML-API downloads, so no STORAGE_EMULATOR_HOST
// is needed; the server needs no credentials.
func (g *GCS) ClientOptions() []option.ClientOption {
	return []option.ClientOption{
		option.WithEndpoint(g.URL + "/storage/v1/"),
		option.WithoutAuthentication(),
	}
}

// Client returns a new Cloud Storage client for this server. Extra options
// are applied after ClientOptions. The caller closes the client.
func (g *GCS) Client(ctx context.Context, opts ...option.ClientOption) (*storage.Client, error) {
	c, err := storage.NewClient(ctx, append(g.ClientOptions(), opts...)...)
	if err != nil {
		return nil, fmt.Errorf("new storage client for %s: %w", g.Host, err)
	}
	return c, nil
}

// Close stops the server and waits for it. It returns an error if the server
// had died before Close. Calling it again returns the first result.
func (g *GCS) Close() error { return g.proc.close() }

// findFakeGCSServer locates the fake-gcs-server binary and checks its version.
func findFakeGCSServer() (string, error) {
	if p := os.Getenv("FAKE_GCS_SERVER"); p != "" {
		// An explicit path is trusted as is, version included, so a developer
		// can try another release on purpose.
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("FAKE_GCS_SERVER=%s: %w", p, err)
		}
		return p, nil
	}
	var candidates []string
	if p, err := exec.LookPath("fake-gcs-server"); err == nil {
		candidates = append(candidates, p)
	}
	if d := os.Getenv("GOBIN"); d != "" {
		candidates = append(candidates, filepath.Join(d, "fake-gcs-server"))
	}
	if d := goPathBin(); d != "" {
		candidates = append(candidates, filepath.Join(d, "fake-gcs-server"))
	}
	var wrong []string
	for _, c := range candidates {
		if _, err := os.Stat(c); err != nil {
			continue
		}
		v, err := moduleVersion(c)
		if err == nil && v == FakeGCSServerVersion {
			return c, nil
		}
		if err != nil {
			v = err.Error()
		}
		wrong = append(wrong, c+" ("+v+")")
	}
	if len(wrong) > 0 {
		return "", fmt.Errorf("%w: fake-gcs-server %s not found, only %s; %s",
			ErrNotInstalled, FakeGCSServerVersion, strings.Join(wrong, ", "), installHint)
	}
	return "", fmt.Errorf("%w: fake-gcs-server not found in $FAKE_GCS_SERVER, $PATH, $GOBIN or $(go env GOPATH)/bin; %s",
		ErrNotInstalled, installHint)
}

// goPathBin is $(go env GOPATH)/bin, where go install puts binaries when
// GOBIN is unset. Asking the go command honours `go env -w GOPATH=...`.
func goPathBin() string {
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
			gopath = strings.TrimSpace(string(out))
		}
	}
	if gopath == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		gopath = filepath.Join(home, "go")
	}
	// Like go install, use the first entry of a list.
	gopath, _, _ = strings.Cut(gopath, string(filepath.ListSeparator))
	return filepath.Join(gopath, "bin")
}

// moduleVersion reads which fake-gcs-server release a binary was built from.
func moduleVersion(path string) (string, error) {
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		return "", fmt.Errorf("no Go build info: %w", err)
	}
	if info.Main.Path != fakeGCSModule {
		return "", fmt.Errorf("built from module %q", info.Main.Path)
	}
	return info.Main.Version, nil
}
