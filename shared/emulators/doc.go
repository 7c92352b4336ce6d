// Package emulators starts real Google Cloud emulators as subprocesses for
// tests: fake-gcs-server for Cloud Storage and the Cloud SDK Pub/Sub emulator.
//
// Tests that touch Cloud Storage or Pub/Sub run against these processes rather
// than in-process fakes, so that they exercise the same wire protocol, the same
// client configuration and the same failure modes (preconditions, redelivery,
// notifications) as production. Every emulator listens on a free loopback port
// and runs in its own process group, which Close stops as a whole: the Pub/Sub
// emulator is a shell script that execs Java, and a stray JVM left behind by
// one test binary would hold 150 MB and a port for the rest of the CI job.
//
// # Test helpers
//
// [GCSForTest] starts a dedicated fake-gcs-server per call (it is ready in
// about 0.2 s) and closes it when the test ends.
//
// [PubSubForTest] hands out the one Pub/Sub emulator shared by the whole test
// binary, started on first use: a JVM needs 1.5–4 s of wall time and several
// CPU-seconds to start, which on a 2-core CI runner adds up quickly. Because
// the process is shared, tests must use resource names of their own; the
// emulator accepts any project, so the simplest isolation is a project per
// test, e.g. PubSubForTest(t, UniqueName(t)), or unique topic and subscription
// IDs from [UniqueName]. A test that needs a fresh process starts one with
// [StartPubSub] and closes it.
//
// The shared emulator is stopped by [CloseShared], which a TestMain should
// call after m.Run (see [RunTests]). Without it, on Linux the kernel still
// kills the emulator when the test binary exits (the child is started with a
// parent-death signal); elsewhere it would outlive the binary.
//
// When an emulator is not installed the helpers skip the test with a message
// naming .ci/install-emulators.sh, except under CI (CI=true or CI=1), where a
// missing emulator fails the test: CI must never pass by skipping. An emulator
// that is installed but fails to start always fails the test.
//
// # Finding the binaries
//
// fake-gcs-server: $FAKE_GCS_SERVER, else fake-gcs-server on $PATH, else
// $GOBIN, else $(go env GOPATH)/bin. It must be version v1.56.1 (checked from
// the binary's build information) unless $FAKE_GCS_SERVER names it explicitly.
//
// Pub/Sub: $PUBSUB_EMULATOR_BIN, else the Cloud SDK's
// platform/pubsub-emulator/bin/cloud-pubsub-emulator under
// /usr/lib/google-cloud-sdk or next to the gcloud found on $PATH. It needs
// Java ($JAVA_HOME/bin/java or java on $PATH).
//
// # Clients
//
// [GCS.Client] and [PubSub.Client] point clients at one emulator through
// client options only, without the process-global STORAGE_EMULATOR_HOST and
// PUBSUB_EMULATOR_HOST variables, so tests using different emulators can run
// in parallel. Code under test that builds its own clients from the
// environment can be pointed at an emulator with [GCS.Setenv] and
// [PubSub.Setenv] (which, like t.Setenv, rule out t.Parallel).
package emulators
