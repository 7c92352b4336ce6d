// Command functions serves Orchard's prediction functions locally, or in
// any container, through the Functions Framework.
//
// With FUNCTION_TARGET unset every function is served at /<Name>
// (/Predict, /PredictOnUpload); with FUNCTION_TARGET=Predict only that one,
// at /. PORT (default 8080) and HOST (default all interfaces) choose the
// address. The functions read the rest of their configuration from the
// environment on first use (see predict.Config):
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
	functions.HandleSIGTERM = false // handled here
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("PORT=%q is not a port number", port)
	}
	host := os.Getenv("HOST")
	drain := 8 * time.Second
	if s := os.Getenv("SHUTDOWN_TIMEOUT_SECONDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return fmt.Errorf("SHUTDOWN_TIMEOUT_SECONDS=%q: want a number of seconds", s)
		}
		drain = time.Duration(n) * time.Second
	}

	if err := startPprof(log); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	srv, err := server(host, port)
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- srv.ListenAndServe() }()
	log.Info("functions: listening", "host", host, "port", port, "function_target", os.Getenv("FUNCTION_TARGET"),
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
