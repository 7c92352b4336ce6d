package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/orchard-mlops/orchard/functions/monitor"
	"github.com/orchard-mlops/orchard/shared/logging"
	"github.com/orchard-mlops/orchard/shared/registry"
)

// runMonitor runs the Monitor function's work once, on demand: the window
// of predictions in the results bucket against each version's baseline,
// writing the reports (monitoring/ in the results bucket) and printing the
// figures side by side.
func runMonitor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("monitor", stderr)
	results := fs.String("results", resultsDefault(), "results bucket: gs://bucket, file:///dir or a path ($RESULTS_BUCKET when set)")
	reg := fs.String("registry", os.Getenv("REGISTRY_URI"), "registry URI, for baselines and labels ($REGISTRY_URI when set)")
	window := fs.Duration("window", 0, "window length (default $MONITOR_WINDOW, else 1h)")
	endFlag := fs.String("end", "", "window end, RFC 3339 (default now)")
	startFlag := fs.String("start", "", "window start, RFC 3339 (default end minus -window)")
	jsonOut := fs.Bool("json", false, "print the run's summary as JSON")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if *results == "" || *reg == "" {
		return usageError{errors.New("monitor: -results and -registry are required")}
	}
	cfg, err := monitor.ConfigFromEnv(os.Getenv)
	if err != nil {
		return usageError{err}
	}
	if *window > 0 {
		cfg.Window = *window
	}
	end, start := time.Now(), time.Time{}
	for _, t := range []struct {
		flag string
		dst  *time.Time
	}{{*endFlag, &end}, {*startFlag, &start}} {
		if t.flag != "" {
			if *t.dst, err = time.Parse(time.RFC3339, t.flag); err != nil {
				return usageError{fmt.Errorf("monitor: %w", err)}
			}
		}
	}
	if start.IsZero() {
		start = end.Add(-cfg.Window)
	}
	rs, err := stores.Open(ctx, *results)
	if err != nil {
		return err
	}
	r, err := registry.Open(ctx, *reg, registry.Options{Storage: stores})
	if err != nil {
		return err
	}
	run := &monitor.Runner{Config: cfg, Results: rs, Registry: r, Log: logging.New(stderr, logging.WithLevel(slog.LevelWarn))} // the WARNING lines, as the function logs them
	s, err := run.RunWindow(ctx, start, end)
	if err != nil {
		return err
	}
	if *jsonOut {
		return json.NewEncoder(stdout).Encode(s)
	}
	fmt.Fprintf(stdout, "%d results read in %s .. %s (%d malformed, skipped; %d failures)\n",
		s.Read, start.UTC().Format(time.RFC3339), end.UTC().Format(time.RFC3339), s.Malformed, s.Failed)
	if len(s.Reports) == 0 {
		fmt.Fprintln(stdout, "no predictions in the window")
		return nil
	}
	return monitor.WriteTable(stdout, s.Columns(""))
}

// resultsDefault is gs://$RESULTS_BUCKET when set.
func resultsDefault() string {
	if b := os.Getenv("RESULTS_BUCKET"); b != "" {
		return "gs://" + b
	}
	return ""
}
