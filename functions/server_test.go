package functions

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/orchard-mlops/orchard/shared/events"
)

// serveForTest serves NewServer (the framework's routing) on a loopback
// port until the test ends and returns its base URL.
func serveForTest(t *testing.T, to Timeouts) string {
	t.Helper()
	t.Setenv("FUNCTION_TARGET", "")
	srv, err := NewServer("", to)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return "http://" + l.Addr().String()
}

// TestServerTimeouts holds 20 connections that never finish their headers:
// the server must close every one (the bare framework server held them
// indefinitely), and keep serving others meanwhile.
func TestServerTimeouts(t *testing.T) {
	to := DefaultTimeouts()
	to.ReadHeader = 300 * time.Millisecond
	base := serveForTest(t, to)
	addr := strings.TrimPrefix(base, "http://")
	const n = 20
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("POST /Predict HTTP/1.1\r\nHost: x\r\nX-Slow: ")); err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	closed := 0
	for i, c := range conns {
		// A generous bound that only stops a hung test; being closed, not
		// how fast, is what is asserted.
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, err := bufio.NewReader(c).ReadString('\n')
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			t.Errorf("connection %d still open: the server did not enforce ReadHeaderTimeout", i)
		case err == nil:
			// net/http may answer 408 before closing; the close must follow.
			if _, err := bufio.NewReader(c).ReadByte(); errors.As(err, &ne) && ne.Timeout() {
				t.Errorf("connection %d answered but stayed open", i)
			} else {
				closed++
			}
		default:
			closed++
		}
	}
	if closed != n {
		t.Fatalf("%d of %d slow-header connections closed", closed, n)
	}
	t.Logf("%d slow-header connections closed with ReadHeaderTimeout %v", closed, to.ReadHeader)
}

// TestMalformedCloudEvents: events the CloudEvents SDK cannot parse get a
// 2xx (acknowledged, not redelivered until dead-lettered), where the bare
// framework answers 500.
func TestMalformedCloudEvents(t *testing.T) {
	base := serveForTest(t, DefaultTimeouts())
	mux, err := frameworkHandler()
	if err != nil {
		t.Fatal(err)
	}
	good := map[string]string{
		"Content-Type": "application/json", "ce-specversion": "1.0", "ce-id": "e1", "ce-type": events.StorageFinalized,
		"ce-source": "//storage.googleapis.com/projects/_/buckets/uploads", "ce-time": "2026-12-01T10:00:00Z",
	}
	for _, tt := range []struct{ name, header, value string }{
		{"bad source", "ce-source", "://%zz"},
		{"bad time", "ce-time", "yesterday"},
		{"no id", "ce-id", ""},
	} {
		req, _ := http.NewRequest(http.MethodPost, base+"/PredictOnUpload", strings.NewReader(`{}`))
		for k, v := range good {
			req.Header.Set(k, v)
		}
		req.Header.Set(tt.header, tt.value)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Errorf("%s: HTTP %d, want 2xx (acknowledged)", tt.name, resp.StatusCode)
		}
		if tt.header == "ce-id" {
			continue
		}
		// Why the guard exists: the framework alone refuses it with a 5xx,
		// which Pub/Sub redelivers.
		rec := &statusRecorder{header: http.Header{}}
		req2, _ := http.NewRequest(http.MethodPost, "/PredictOnUpload", strings.NewReader(`{}`))
		req2.Header = req.Header.Clone()
		mux.ServeHTTP(rec, req2)
		if rec.code/100 != 5 {
			t.Errorf("%s: the bare framework answered %d, want 5xx (else the guard is moot)", tt.name, rec.code)
		}
	}
}

type statusRecorder struct {
	header http.Header
	code   int
}

func (r *statusRecorder) Header() http.Header { return r.header }
func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = 200
	}
	return len(b), nil
}
func (r *statusRecorder) WriteHeader(c int) { r.code = c }

func TestTimeoutsFromEnv(t *testing.T) {
	env := map[string]string{"HTTP_READ_HEADER_TIMEOUT": "2s", "HTTP_IDLE_TIMEOUT": "30"}
	to, err := TimeoutsFromEnv(func(k string) string { return env[k] })
	if err != nil || to.ReadHeader != 2*time.Second || to.Idle != 30*time.Second || to.Read != DefaultTimeouts().Read {
		t.Errorf("TimeoutsFromEnv = %+v, %v", to, err)
	}
	if _, err := TimeoutsFromEnv(func(k string) string { return map[string]string{"HTTP_READ_TIMEOUT": "-1s"}[k] }); err == nil {
		t.Error("a negative timeout was accepted")
	}
}
