package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orchard-mlops/orchard/shared/model/modeltest"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/onnxrt/onnxrttest"
	"github.com/orchard-mlops/orchard/shared/proc"
)

// TestMainServesAndShutsDown runs this command as a child process (the
// test binary re-executed into main), classifies an image over HTTP at
// /Predict, then sends SIGTERM and expects a clean exit.
func TestMainServesAndShutsDown(t *testing.T) {
	if os.Getenv("ORCHARD_RUN_MAIN") == "1" {
		main()
		return
	}
	onnxrttest.Init(t)
	lib, err := onnxrt.Find()
	if err != nil {
		t.Skip(err)
	}
	dir := modeltest.Dir(t, modeltest.Options{Version: "v2"})
	port, err := proc.FreePort()
	if err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestMainServesAndShutsDown$")
	cmd.Env = append(os.Environ(), "ORCHARD_RUN_MAIN=1", "MODEL_URI=file://"+dir, "ORT_LIB="+lib,
		fmt.Sprintf("PORT=%d", port), "HOST=127.0.0.1", "FUNCTION_TARGET=", "K_SERVICE=", "SHUTDOWN_TIMEOUT_SECONDS=5")
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logs := make(chan string, 100)
	go func() {
		s := bufio.NewScanner(stderr)
		for s.Scan() {
			logs <- s.Text()
		}
		close(logs)
	}()
	defer cmd.Process.Kill()

	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	var resp *http.Response
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err = http.Post(base+"/Predict", "image/jpeg", bytes.NewReader(modeltest.JPEG(t, modeltest.Solid(modeltest.Green, 100, 100)))); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("the command did not serve: %v", err)
	}
	var body struct {
		Model       struct{ Version string }
		Predictions []struct{ Label string }
	}
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != 200 || body.Model.Version != "v2" || body.Predictions[0].Label != "green" {
		t.Fatalf("POST /Predict: %d %+v", resp.StatusCode, body)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("no exit within 10 s of SIGTERM")
	}
	var all []string
	for l := range logs {
		all = append(all, l)
	}
	joined := strings.Join(all, "\n")
	for _, want := range []string{`"message":"functions: listening"`, `"message":"predict"`, `"label":"green"`, `"message":"functions: shutting down"`} {
		if !strings.Contains(joined, want) {
			t.Errorf("logs lack %s:\n%s", want, joined)
		}
	}
}
