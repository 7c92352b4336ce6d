package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/orchard-mlops/orchard/shared/proc"
)

// TestPprofListener runs the command (this test binary re-executed into
// main): with ORCHARD_PPROF_ADDR the profiles are on their own loopback
// listener and not on the public port; a non-loopback address is refused.
func TestPprofListener(t *testing.T) {
	if os.Getenv("ORCHARD_RUN_MAIN") == "1" {
		main()
		return
	}
	for _, addr := range []string{"0.0.0.0:6060", ":6060", "192.0.2.1:6060"} {
		if _, err := listenLoopback(addr); err == nil {
			t.Errorf("listenLoopback(%q) accepted a non-loopback address", addr)
		}
	}
	port, err := proc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	pport, err := proc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	start := func(pprofAddr string, out io.Writer) *proc.Process {
		t.Helper()
		env := append(os.Environ(), "ORCHARD_RUN_MAIN=1", fmt.Sprintf("PORT=%d", port), "HOST=127.0.0.1",
			"FUNCTION_TARGET=", "K_SERVICE=", PprofAddrEnv+"="+pprofAddr)
		p, err := proc.Start("functions", []string{os.Args[0], "-test.run=^TestPprofListener$"}, env, "", out)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Stop(5 * time.Second) })
		return p
	}
	var refused bytes.Buffer
	p := start("0.0.0.0:6060", &refused)
	select {
	case <-p.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("a public pprof address did not stop the command")
	}
	if p.Err() == nil || !strings.Contains(refused.String(), "loopback") {
		t.Errorf("public pprof address: exit %v, output %s", p.Err(), refused.String())
	}

	start(fmt.Sprintf("127.0.0.1:%d", pport), io.Discard)
	get := func(url string) (int, string, error) {
		resp, err := http.Get(url)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	var code int
	var body string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if code, body, err = get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/", pport)); err == nil {
			break
		}
	}
	if err != nil || code != 200 || !strings.Contains(body, "goroutine") {
		t.Fatalf("pprof listener: %d %v", code, err)
	}
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if code, _, err = get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/", port)); err == nil {
			break
		}
	}
	if err != nil || code != http.StatusNotFound {
		t.Errorf("public port /debug/pprof/: %d %v, want 404", code, err)
	}
}
