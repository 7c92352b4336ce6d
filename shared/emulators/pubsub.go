package emulators

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/orchard-mlops/orchard/shared/gcp"
	"github.com/orchard-mlops/orchard/shared/proc"
)

// DefaultPubSubEmulatorBin is where Debian's google-cloud-cli-pubsub-emulator
// package installs the emulator.
const DefaultPubSubEmulatorBin = "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator"

// pubsubStartTimeout applies when StartPubSub's context has no deadline. The
// JVM is ready in 1.5–4 s on an idle machine, much later on a loaded one.
const pubsubStartTimeout = 30 * time.Second

// defaultJVMOptions trade peak throughput, which tests never need, for less
// CPU and memory at startup; UsePerfData off also stops the JVM from leaving
// /tmp/hsperfdata_* files behind when it is killed.
const defaultJVMOptions = "-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:-UsePerfData"

// PubSub is a running Pub/Sub emulator.
type PubSub struct {
	// Host is "127.0.0.1:PORT", the value PUBSUB_EMULATOR_HOST would take.
	Host string
	// Project is the project Client and the name helpers use. The emulator
	// itself accepts every project.
	Project string

	proc   *process
	shared bool // handle on the per-binary emulator: Close leaves it running
}

// StartPubSub starts the Cloud SDK Pub/Sub emulator on a free loopback port
// and waits until it serves. project becomes PubSub.Project. ctx bounds the
// startup only (30 s if it has no deadline); the emulator runs until Close.
func StartPubSub(ctx context.Context, project string) (*PubSub, error) {
	if project == "" {
		return nil, errors.New("start pubsub emulator: empty project")
	}
	bin, err := findPubSubEmulator()
	if err != nil {
		return nil, err
	}
	ctx, cancel := withStartTimeout(ctx, pubsubStartTimeout)
	defer cancel()
	ps, err := startWithRetry(ctx, func(ctx context.Context, port int) (*PubSub, error) {
		return startPubSubOnPort(ctx, bin, port, project)
	})
	if err != nil {
		return nil, fmt.Errorf("start pubsub emulator: %w", err)
	}
	return ps, nil
}

func startPubSubOnPort(ctx context.Context, bin string, port int, project string) (*PubSub, error) {
	host := "127.0.0.1:" + strconv.Itoa(port)
	// The emulator keeps state in memory only; the directory is its working
	// directory and the Cloud SDK config dir, so nothing it or a gcloud helper
	// might write lands in the repository or the developer's ~/.config/gcloud.
	dir, err := os.MkdirTemp("", "orchard-pubsub-emulator-")
	if err != nil {
		return nil, fmt.Errorf("create temp dir: %w", err)
	}
	extra := []string{
		"CLOUDSDK_CONFIG=" + dir,
		"CLOUDSDK_CORE_DISABLE_PROMPTS=1",
	}
	// CLOUD_PUBSUB_EMULATOR_OPTS is the start script's own JVM options
	// variable; respect a caller's choice.
	if os.Getenv("CLOUD_PUBSUB_EMULATOR_OPTS") == "" {
		extra = append(extra, "CLOUD_PUBSUB_EMULATOR_OPTS="+defaultJVMOptions)
	}
	env := proc.Env([]string{"CLOUDSDK_CONFIG=", "CLOUD_PUBSUB_EMULATOR_OPTS="}, extra...)
	args := []string{"--host=127.0.0.1", "--port=" + strconv.Itoa(port)}

	p, err := startProcess("pubsub emulator", bin, args, env, dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	p.cleanup = func() { os.RemoveAll(dir) }
	ps := &PubSub{Host: host, Project: project, proc: p}
	err = p.waitReady(ctx, readiness{
		marker: "Server started, listening on " + strconv.Itoa(port),
		// The JVM logs this and keeps running, serving nothing.
		bindFailure: []string{"java.net.BindException", "Address already in use"},
		probe:       ps.probe,
	})
	if err != nil {
		p.close()
		return nil, err
	}
	return ps, nil
}

// probe asks the emulator's HTTP root, which answers "Ok" once serving.
func (ps *PubSub) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ps.Host+"/", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /: %s", resp.Status)
	}
	if strings.TrimSpace(string(body)) != "Ok" {
		return fmt.Errorf("GET /: unexpected body %q", body)
	}
	return nil
}

// ClientOptions point a Google API gRPC client (pubsub, or the raw apiv1
// clients) at this emulator: plaintext, no credentials. This is what the
// client library does itself when PUBSUB_EMULATOR_HOST is set, but without
// the process-global variable, and explicit options win over it.
func (ps *PubSub) ClientOptions() []option.ClientOption {
	return []option.ClientOption{
		option.WithEndpoint(ps.Host),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		option.WithTelemetryDisabled(),
		// Without PUBSUB_EMULATOR_HOST the client opens up to four connections
		// for throughput; one is plenty for an emulator.
		option.WithGRPCConnectionPool(1),
	}
}

// Client returns a new Pub/Sub client for ps.Project on this emulator. Extra
// options are applied after ClientOptions. The caller closes the client.
func (ps *PubSub) Client(ctx context.Context, opts ...option.ClientOption) (*pubsub.Client, error) {
	return ps.ClientForProject(ctx, ps.Project, opts...)
}

// ClientForProject is Client for another project on the same emulator.
func (ps *PubSub) ClientForProject(ctx context.Context, project string, opts ...option.ClientOption) (*pubsub.Client, error) {
	c, err := pubsub.NewClient(ctx, project, append(ps.ClientOptions(), opts...)...)
	if err != nil {
		return nil, fmt.Errorf("new pubsub client for %s: %w", ps.Host, err)
	}
	return c, nil
}

// TopicName returns "projects/PROJECT/topics/ID".
func (ps *PubSub) TopicName(id string) string {
	if name, err := gcp.TopicName(ps.Project, id); err == nil {
		return name
	}
	return id // invalid: Pub/Sub's own error names it
}

// SubscriptionName returns "projects/PROJECT/subscriptions/ID".
func (ps *PubSub) SubscriptionName(id string) string {
	return "projects/" + ps.Project + "/subscriptions/" + id
}

// Close stops the emulator's whole process group (SIGTERM, then SIGKILL after
// a grace period) and waits for it. It returns an error if the emulator had
// died before Close. On a handle from PubSubForTest, which shares one
// emulator per test binary, it does nothing; see CloseShared.
func (ps *PubSub) Close() error {
	if ps.shared {
		return nil
	}
	return ps.proc.close()
}

// findPubSubEmulator locates the emulator's start script and checks for Java.
func findPubSubEmulator() (string, error) {
	if p := os.Getenv("PUBSUB_EMULATOR_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("PUBSUB_EMULATOR_BIN=%s: %w", p, err)
		}
		return p, javaAvailable()
	}
	candidates := []string{DefaultPubSubEmulatorBin}
	// Cloud SDKs installed from the tarball live elsewhere (~/google-cloud-sdk);
	// gcloud sits in its bin directory.
	if g, err := exec.LookPath("gcloud"); err == nil {
		if g, err = filepath.EvalSymlinks(g); err == nil {
			root := filepath.Dir(filepath.Dir(g))
			candidates = append(candidates, filepath.Join(root, "platform", "pubsub-emulator", "bin", "cloud-pubsub-emulator"))
		}
	}
	for _, c := range candidates {
		if fi, err := os.Stat(c); err == nil && !fi.IsDir() {
			return c, javaAvailable()
		}
	}
	return "", fmt.Errorf("%w: Pub/Sub emulator not found at %s; %s (Debian package google-cloud-cli-pubsub-emulator, or gcloud components install pubsub-emulator) or set PUBSUB_EMULATOR_BIN",
		ErrNotInstalled, strings.Join(candidates, " or "), installHint)
}

// javaAvailable mirrors the start script's lookup, so a missing JVM is
// reported as "not installed" instead of as a cryptic early exit.
func javaAvailable() error {
	if jh := os.Getenv("JAVA_HOME"); jh != "" {
		if _, err := os.Stat(filepath.Join(jh, "bin", "java")); err == nil {
			return nil
		}
		return fmt.Errorf("%w: JAVA_HOME=%s has no bin/java; the Pub/Sub emulator needs Java 11+; %s", ErrNotInstalled, jh, installHint)
	}
	if _, err := exec.LookPath("java"); err != nil {
		return fmt.Errorf("%w: java not on PATH; the Pub/Sub emulator needs Java 11+; %s", ErrNotInstalled, installHint)
	}
	return nil
}
