package sweep

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/model"
	"github.com/orchard-mlops/orchard/shared/proc"
	"github.com/orchard-mlops/orchard/shared/registry"
	"github.com/orchard-mlops/orchard/trainer/compare"
)

// TrialArgs is the `trainer train` command line every trial shares (a
// Vertex AI trial job spec's container args): the dataset, the model
// name, the sweep's version (the trainer appends -t<trial>), the fixed
// overrides and the metric to report. The trial's parameters follow as
// Trial.Args.
func (s *Spec) TrialArgs(data, version string) []string {
	args := []string{"train", "-data", data, "-set", "name=" + s.Name, "-set", "version=" + version}
	for _, o := range s.Set {
		args = append(args, "-set", o)
	}
	return append(args, "-hypertune-metric", s.Metric)
}

// TrialVersion is the version a trial's model gets (see TrialArgs).
func TrialVersion(version, trialID string) string { return version + "-t" + trialID }

// TrialDir is a trial's model directory under a sweep's output directory,
// laid out as Vertex AI lays out a tuning job's baseOutputDirectory.
func TrialDir(base, trialID string) string { return trialPath(base, trialID, "model") }

func trialPath(base, trialID, dir string) string {
	return strings.TrimRight(base, "/") + "/" + trialID + "/" + dir
}

// Result is a finished trial.
type Result struct {
	Trial   Trial
	RunURI  string  // the trial's model directory
	Metric  float64 // the final reported metric
	Err     error   // why the trial failed (nil: it succeeded)
	Seconds float64
}

// LocalOptions configure RunLocal.
type LocalOptions struct {
	Trainer []string // argv prefix that runs the trainer binary
	Data    string   // dataset URI
	Out     string   // sweep directory (local or gs://): trial N writes Out/N/model
	Version string   // sweep version; trial versions are Version-t<N>
	LogDir  string   // local directory for trial logs and metric files
	Env     []string // extra environment for the trials
	Stdout  io.Writer
}

// RunLocal runs every trial as a `trainer train` process, Parallel at a
// time, and reads each one's metric from its hypertune file. Once
// MaxFailed trials have failed (default: all), no new trial starts.
func RunLocal(ctx context.Context, s *Spec, o LocalOptions) ([]Result, error) {
	if len(o.Trainer) == 0 || o.Data == "" || o.Out == "" || o.Version == "" || o.LogDir == "" {
		return nil, errors.New("sweep: Trainer, Data, Out, Version and LogDir are required")
	}
	if err := os.MkdirAll(o.LogDir, 0o755); err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	out := o.Stdout
	if out == nil {
		out = io.Discard
	}
	trials := s.Expand()
	results := make([]Result, len(trials))
	var mu sync.Mutex
	failed := 0
	maxFailed := s.MaxFailed
	if maxFailed == 0 {
		maxFailed = len(trials)
	}
	sem := make(chan struct{}, s.Parallel)
	var wg sync.WaitGroup
	for i, t := range trials {
		mu.Lock()
		stop := failed >= maxFailed
		mu.Unlock()
		if stop || ctx.Err() != nil {
			results[i] = Result{Trial: t, Err: errors.New("not started")}
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			mu.Lock()
			fmt.Fprintf(out, "trial %d/%d started: %s\n", t.ID, len(trials), t)
			mu.Unlock()
			r := runTrial(ctx, s, t, o)
			mu.Lock()
			results[i] = r
			if r.Err != nil {
				failed++
				fmt.Fprintf(out, "trial %d failed after %.0f s: %v\n", t.ID, r.Seconds, r.Err)
			} else {
				fmt.Fprintf(out, "trial %d done in %.0f s: %s = %.4f\n", t.ID, r.Seconds, s.Metric, r.Metric)
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return results, err
	}
	if failed >= maxFailed {
		return results, fmt.Errorf("sweep: %d of %d trials failed (max_failed %d)", failed, len(trials), maxFailed)
	}
	return results, nil
}

func runTrial(ctx context.Context, s *Spec, t Trial, o LocalOptions) Result {
	id := strconv.Itoa(t.ID)
	start := time.Now()
	r := Result{Trial: t, RunURI: TrialDir(o.Out, id)}
	metricFile := filepath.Join(o.LogDir, "trial-"+id+".metrics")
	logPath := filepath.Join(o.LogDir, "trial-"+id+".log")
	done := func(err error) Result {
		r.Err, r.Seconds = err, time.Since(start).Seconds()
		return r
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return done(err)
	}
	defer logf.Close()
	argv := append(append(append([]string(nil), o.Trainer...), s.TrialArgs(o.Data, o.Version)...), t.Args()...)
	env := append(append(os.Environ(), o.Env...), TrialIDEnv+"="+id, MetricFileEnv+"="+metricFile,
		"AIP_MODEL_DIR="+r.RunURI, "AIP_CHECKPOINT_DIR="+trialPath(o.Out, id, "checkpoints"),
		"AIP_TENSORBOARD_LOG_DIR="+trialPath(o.Out, id, "logs"))
	p, err := proc.Start("trial "+id, argv, env, "", logf)
	if err != nil {
		return done(err)
	}
	select {
	case <-p.Done():
	case <-ctx.Done():
	}
	_ = p.Stop(5 * time.Second)
	if err := p.Err(); err != nil {
		b, _ := os.ReadFile(logPath)
		return done(fmt.Errorf("%w; log %s: %s", err, logPath, strings.ReplaceAll(proc.LastLines(string(b), 3), "\n", " | ")))
	}
	if err := ctx.Err(); err != nil {
		return done(err)
	}
	b, err := os.ReadFile(metricFile)
	if err != nil {
		return done(fmt.Errorf("the trial reported no metric: %w", err))
	}
	m, err := ReadMetric(b, s.Metric)
	if err != nil {
		return done(err)
	}
	r.Metric = m.Value
	return done(nil)
}

// Best returns the successful trial with the best metric (ties: the lower
// trial ID).
func Best(s *Spec, results []Result) (Result, bool) {
	var best *Result
	for i := range results {
		r := &results[i]
		if r.Err == nil && (best == nil || s.Better(r.Metric, best.Metric) ||
			r.Metric == best.Metric && r.Trial.ID < best.Trial.ID) {
			best = r
		}
	}
	if best == nil {
		return Result{}, false
	}
	return *best, true
}

// FinishOptions configure Finish.
type FinishOptions struct {
	CompareOut string // directory for the comparison page ("" skips it)
	// Registry, when set (a registry URI), receives the best trial through
	// registry.Publish with promotion: the quality gate decides whether it
	// becomes production.
	Registry       string
	Margin         float64
	AllowNewLabels bool
	By, Reason     string
	// Runtime runs the gate's checks when Registry is set
	// (registry.PublishOptions.Runtime).
	Runtime registry.Runtime
	// Storage opens the run, page and registry URIs; nil: local paths only.
	Storage *blob.Opener
}

// Summary is what Finish did.
type Summary struct {
	Best      Result
	Published *registry.PublishResult // nil when not asked
}

// Finish writes the comparison page of every successful trial and, when
// asked, publishes the best one through the registry's gate.
func Finish(ctx context.Context, s *Spec, results []Result, o FinishOptions) (*Summary, error) {
	best, ok := Best(s, results)
	if !ok {
		return nil, errors.New("sweep: no trial succeeded")
	}
	sum := &Summary{Best: best}
	if o.CompareOut != "" {
		var runs []*compare.Run
		for _, r := range results {
			if r.Err != nil {
				continue
			}
			run, err := compare.Load(ctx, o.Storage, r.RunURI)
			if err != nil {
				return sum, fmt.Errorf("sweep: trial %d: %w", r.Trial.ID, err)
			}
			run.Label = fmt.Sprintf("trial %d", r.Trial.ID)
			runs = append(runs, run)
		}
		title := fmt.Sprintf("Sweep %s: %d trials, best trial %d (%s %.4f)", s.Name, len(runs), best.Trial.ID, s.Metric, best.Metric)
		if err := compare.Write(ctx, o.Storage, o.CompareOut, title, runs); err != nil {
			return sum, err
		}
	}
	if o.Registry != "" {
		if err := CheckMetric(ctx, o.Storage, s, best); err != nil {
			return sum, err
		}
		reg, err := registry.Open(ctx, o.Registry, registry.Options{Storage: o.Storage})
		if err != nil {
			return sum, err
		}
		pub, err := registry.Publish(ctx, reg, best.RunURI, registry.PublishOptions{Name: s.Name, Promote: true,
			AllowNewLabels: o.AllowNewLabels, Margin: o.Margin, By: o.By, Reason: o.Reason, Runtime: o.Runtime})
		if err != nil {
			return sum, err
		}
		sum.Published = pub
	}
	return sum, nil
}

// CheckMetric confirms that a trial's run directory reports the metric it
// was ranked by (a guard against a trial whose metric file belongs to
// another run).
func CheckMetric(ctx context.Context, op *blob.Opener, s *Spec, r Result) error {
	m, err := model.Load(ctx, op, r.RunURI)
	if err != nil {
		return err
	}
	v, err := MetricValue(&m.Metadata, s.Metric)
	if err != nil {
		return err
	}
	if v != r.Metric {
		return fmt.Errorf("sweep: trial %d reported %s %v, its model.json says %v", r.Trial.ID, s.Metric, r.Metric, v)
	}
	return nil
}

// PrintResults writes one line per trial: parameters, metric (or why the
// trial failed), seconds and model directory.
func PrintResults(w io.Writer, s *Spec, results []Result) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "TRIAL\tPARAMETERS\t%s\tSECONDS\tRUN\n", strings.ToUpper(s.Metric))
	for _, r := range results {
		m := fmt.Sprintf("%.4f", r.Metric)
		if r.Err != nil {
			m = "failed: " + r.Err.Error()
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%.1f\t%s\n", r.Trial.ID, r.Trial, m, r.Seconds, r.RunURI)
	}
	tw.Flush()
}

// PrintSummary writes the best trial, the comparison page and the gate's
// decision.
func PrintSummary(w io.Writer, s *Spec, sum *Summary, compareOut string) {
	fmt.Fprintf(w, "best: trial %d (%s) %s %.4f -> %s\n", sum.Best.Trial.ID, sum.Best.Trial, s.Metric, sum.Best.Metric, sum.Best.RunURI)
	if compareOut != "" {
		fmt.Fprintf(w, "comparison: %s/index.html\n", strings.TrimRight(compareOut, "/"))
	}
	if p := sum.Published; p != nil {
		verdict := "not promoted"
		if p.Promoted() {
			verdict = "promoted to production"
		}
		reason := ""
		if p.Decision != nil {
			reason = ": " + p.Decision.Reason
		}
		fmt.Fprintf(w, "published %s %s, %s%s\n", p.Name, p.Version, verdict, reason)
	}
}
