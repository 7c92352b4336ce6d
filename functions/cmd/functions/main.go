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
// On SIGTERM or SIGINT it waits up to SHUTDOWN_TIMEOUT_SECONDS (default 8)
// for running requests, flushes metrics and exits. The Functions Framework
// does not expose its server, so the listener stays open while draining.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/GoogleCloudPlatform/functions-framework-go/funcframework"

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

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- funcframework.StartHostPort(host, port) }()
	log.Info("functions: listening", "host", host, "port", port, "function_target", os.Getenv("FUNCTION_TARGET"))

	select {
	case err := <-served:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	log.Info("functions: shutting down", "drain", drain.String())
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	if err := functions.Shutdown(sctx); err != nil {
		log.Error("functions: shutdown", "error", err.Error())
	}
	return nil
}
