// Command functions serves Orchard's prediction functions locally, or in
// any container, through the Functions Framework.
//
// With FUNCTION_TARGET unset every function is served at /<Name>
// (/Predict, /PredictOnUpload, /SubmitTraining); with FUNCTION_TARGET=Predict only that one,
// at /. PORT (default 8080) and HOST (default all interfaces) choose the
// address. The functions read the rest of their configuration from the
// environment at start (see predict.Config and submittraining.Config):
//
//	MODEL_URI=file://$PWD/model PORT=8080 go run ./functions/cmd/functions
//	curl --data-binary @apple.jpg -H 'Content-Type: image/jpeg' localhost:8080/Predict
//
// The framework's routing is served by an http.Server with timeouts
// (HTTP_READ_HEADER_TIMEOUT, HTTP_READ_TIMEOUT, HTTP_WRITE_TIMEOUT,
// HTTP_IDLE_TIMEOUT; see functions.TimeoutsFromEnv), so slow clients cannot
// hold connections open. On SIGTERM or SIGINT it stops accepting, waits up
// to SHUTDOWN_TIMEOUT_SECONDS (default 8) for running requests, flushes
// metrics and exits.
//
// ORCHARD_PPROF_ADDR=127.0.0.1:6060 adds net/http/pprof on a separate
// loopback-only listener (off by default; see pprof.go).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/orchard-mlops/orchard/functions"
	"github.com/orchard-mlops/orchard/shared/env"
	"github.com/orchard-mlops/orchard/shared/logging"
	"github.com/orchard-mlops/orchard/shared/memlimit"
)

func main() {
	log := logging.Setup()
	memlimit.SetGoMemLimit(log)
	if err := run(log); err != nil {
		log.Log(context.Background(), logging.LevelCritical, err.Error())
		os.Exit(1)
	}
}

func run(log *slog.Logger) error {
	e := env.New(os.Getenv)
	port := e.Int("PORT", 8080, 0)
	if port > 65535 {
		e.Failf("PORT=%d is not a port number", port)
	}
	host := e.String("HOST", "")
	drain := e.Duration("SHUTDOWN_TIMEOUT_SECONDS", 8*time.Second, time.Second, 0)
	if err := e.Err(); err != nil {
		return err
	}
	functions.Configure() // this main handles SIGTERM and calls Shutdown

	if err := startPprof(log); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	srv, err := server(host, strconv.FormatInt(port, 10))
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- srv.ListenAndServe() }()
	log.Info("functions: listening", "host", host, "port", strconv.FormatInt(port, 10), "function_target", os.Getenv("FUNCTION_TARGET"),
		"read_header_timeout", srv.ReadHeaderTimeout.String(), "read_timeout", srv.ReadTimeout.String(),
		"write_timeout", srv.WriteTimeout.String(), "idle_timeout", srv.IdleTimeout.String())

	select {
	case err := <-served:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	log.Info("functions: shutting down", "drain", drain.String())
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Error("functions: closing the listener", "error", err.Error())
	}
	if err := functions.Shutdown(sctx); err != nil {
		log.Error("functions: shutdown", "error", err.Error())
	}
	return nil
}

// server is the HTTP server for host:port, with timeouts from the
// environment.
func server(host, port string) (*http.Server, error) {
	t, err := functions.TimeoutsFromEnv(os.Getenv)
	if err != nil {
		return nil, err
	}
	return functions.NewServer(net.JoinHostPort(host, port), t)
}
