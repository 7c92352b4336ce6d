package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	cloudrun "cloud.google.com/go/run/apiv2"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/orchard-mlops/orchard/functions/batch"
	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/registry"
)

// runFlags name the batch job and where its Admin API is.
type runFlags struct {
	project, region, job, endpoint string
}

func addRunFlags(f *flag.FlagSet) *runFlags {
	var r runFlags
	f.StringVar(&r.project, "project", defaultProject(), "Google Cloud project ($GOOGLE_CLOUD_PROJECT when set)")
	f.StringVar(&r.region, "region", os.Getenv("RUN_REGION"), "the job's region ($RUN_REGION when set)")
	f.StringVar(&r.job, "job", firstNonEmpty(os.Getenv("BATCH_JOB"), "orchard-batch"), "the Cloud Run job ($BATCH_JOB when set; Terraform's is <prefix>-batch)")
	f.StringVar(&r.endpoint, "endpoint", os.Getenv("RUN_ENDPOINT"), "Cloud Run Admin API address (default run.googleapis.com:443; 127.0.0.1:PORT for the local stand-in, $RUN_ENDPOINT)")
	return &r
}

func (r *runFlags) jobName() (string, error) {
	if r.project == "" || r.region == "" {
		return "", usageError{errors.New("-project and -region are required ($GOOGLE_CLOUD_PROJECT, $RUN_REGION)")}
	}
	return "projects/" + r.project + "/locations/" + r.region + "/jobs/" + r.job, nil
}

// runClients are the two Admin API clients a batch run needs.
type runClients struct {
	jobs  *cloudrun.JobsClient
	execs *cloudrun.ExecutionsClient
}

func (r *runFlags) dial(ctx context.Context) (*runClients, error) {
	opts := endpointOptions(r.endpoint)
	j, err := cloudrun.NewJobsClient(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("cloud run jobs client: %w", err)
	}
	e, err := cloudrun.NewExecutionsClient(ctx, opts...)
	if err != nil {
		j.Close()
		return nil, fmt.Errorf("cloud run executions client: %w", err)
	}
	return &runClients{jobs: j, execs: e}, nil
}

func (c *runClients) Close() { c.jobs.Close(); c.execs.Close() }

// open dials the Admin API and reads the job the flags name.
func (r *runFlags) open(ctx context.Context) (*runClients, *runpb.Job, error) {
	name, err := r.jobName()
	if err != nil {
		return nil, nil, err
	}
	c, err := r.dial(ctx)
	if err != nil {
		return nil, nil, err
	}
	job, err := c.jobs.GetJob(ctx, &runpb.GetJobRequest{Name: name})
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("reading job %s: %w", name, err)
	}
	return c, job, nil
}

// endpointOptions point a Google API client at endpoint: plaintext without
// credentials when it is a loopback address (a local stand-in).
func endpointOptions(endpoint string) []option.ClientOption {
	if endpoint == "" {
		return nil
	}
	opts := []option.ClientOption{option.WithEndpoint(endpoint)}
	if host, _, err := net.SplitHostPort(endpoint); err == nil && (host == "localhost" || net.ParseIP(host).IsLoopback()) {
		opts = append(opts, option.WithoutAuthentication(),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	}
	return opts
}

// jobEnv is the job template's environment (its first container's).
func jobEnv(j *runpb.Job) map[string]string {
	env := map[string]string{}
	if cs := j.GetTemplate().GetTemplate().GetContainers(); len(cs) > 0 {
		for _, e := range cs[0].GetEnv() {
			env[e.GetName()] = e.GetValue()
		}
	}
	return env
}

// runBatch is `orchard batch`: one execution of the batch job over a
// prefix, with the model version resolved here once for every task, then
// followed to its end with a progress line and the run summary.
func runBatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("batch", stderr)
	rf := addRunFlags(fs)
	prefix := fs.String("prefix", "", "gs://bucket/folder/ to classify (required)")
	tasks := fs.Int("tasks", 0, "task count (default the job's)")
	version := fs.String("model-version", "", "registry version to use (default: the -alias version, resolved now, the same for every task)")
	alias := fs.String("alias", registry.Production, "the alias resolved when -model-version is not given")
	wait := fs.Bool("wait", true, "follow the run to its end and print its summary")
	poll := fs.Duration("poll", 5*time.Second, "with -wait: how often to read the run")
	if err := parse(fs, args); err != nil {
		return err
	}
	if !strings.HasPrefix(*prefix, "gs://") {
		return usageError{fmt.Errorf("-prefix gs://bucket/folder/ is required (got %q)", *prefix)}
	}
	c, job, err := rf.open(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	name := job.GetName()
	env := jobEnv(job)
	if *version == "" {
		if *version, err = resolveAlias(ctx, env, *alias); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "model %s: %s is version %s (resolved once, for every task)\n", env["MODEL_NAME"], *alias, *version)
	}
	over := &runpb.RunJobRequest_Overrides{TaskCount: int32(*tasks), ContainerOverrides: []*runpb.RunJobRequest_Overrides_ContainerOverride{{
		Env: []*runpb.EnvVar{envVar(batch.PrefixEnv, *prefix), envVar(batch.ModelVersionEnv, *version)},
	}}}
	op, err := c.jobs.RunJob(ctx, &runpb.RunJobRequest{Name: name, Overrides: over})
	if err != nil {
		return fmt.Errorf("running job %s: %w", name, err)
	}
	ex, err := op.Metadata()
	if err != nil || ex.GetName() == "" {
		return fmt.Errorf("running job %s: the operation names no execution (%v)", name, err)
	}
	res, err := resultsStore(ctx, env)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "started %s: %d tasks over %s with model version %s\n  results beside the uploads' in %s, summaries in %s\n",
		ex.GetName(), ex.GetTaskCount(), *prefix, *version, res.URI(""), res.URI(batch.RunPrefix(ex.GetUid())))
	if !*wait {
		return nil
	}
	return follow(ctx, stdout, c, res, ex.GetName(), *poll)
}

func envVar(k, v string) *runpb.EnvVar {
	return &runpb.EnvVar{Name: k, Values: &runpb.EnvVar_Value{Value: v}}
}

// resolveAlias reads the version an alias of the job's model names.
func resolveAlias(ctx context.Context, env map[string]string, alias string) (string, error) {
	uri, name := env["REGISTRY_URI"], env["MODEL_NAME"]
	if uri == "" || name == "" {
		return "", usageError{errors.New("the job's environment has no REGISTRY_URI and MODEL_NAME: give -model-version")}
	}
	reg, err := openRegistry(ctx, uri, name, "", "")
	if err != nil {
		return "", err
	}
	a, err := reg.Alias(ctx, name, alias)
	if err != nil {
		return "", fmt.Errorf("resolving %s of %s: %w", alias, name, err)
	}
	return a.Version, nil
}

// resultsStore is the job's RESULTS_BUCKET, where the summaries are.
func resultsStore(ctx context.Context, env map[string]string) (blob.Store, error) {
	b := env["RESULTS_BUCKET"]
	if b == "" {
		return nil, errors.New("the job's environment has no RESULTS_BUCKET")
	}
	return stores.Open(ctx, "gs://"+b)
}

// follow polls an execution until it completes, printing a progress line
// each time, then the run summary.
func follow(ctx context.Context, w io.Writer, c *runClients, res blob.Store, name string, poll time.Duration) error {
	start := time.Now()
	for {
		ex, err := c.execs.GetExecution(ctx, &runpb.GetExecutionRequest{Name: name})
		if err != nil {
			return fmt.Errorf("reading %s: %w", name, err)
		}
		sum := runSummary(ctx, res, ex.GetUid(), int(ex.GetTaskCount()))
		fmt.Fprintf(w, "  %s  %s\n", clock(time.Since(start)), progressLine(ex, sum))
		if ex.GetCompletionTime() != nil {
			return printRun(w, ex, sum)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped following %s (the run goes on; orchard batch status -execution %s): %w", name, ex.GetUid(), ctx.Err())
		case <-time.After(poll):
		}
	}
}

func clock(d time.Duration) string {
	d = d.Round(time.Second)
	return fmt.Sprintf("%02d:%02d", int(d.Minutes()), int(d.Seconds())%60)
}

// runSummary is the run summary when the last task has written it, else
// the merge of the task summaries so far (nil if there are none).
func runSummary(ctx context.Context, res blob.Store, execution string, tasks int) *batch.Summary {
	if s, err := readSummary(ctx, res, batch.SummaryKey(execution)); err == nil {
		return s
	}
	ts, err := batch.ReadTaskSummaries(ctx, res, execution)
	if err != nil || len(ts) == 0 {
		return nil
	}
	s, err := batch.Merge(execution, ts)
	if err != nil {
		return nil
	}
	s.Tasks = max(s.Tasks, tasks)
	return s
}

func progressLine(ex *runpb.Execution, s *batch.Summary) string {
	line := fmt.Sprintf("tasks %d/%d succeeded, %d running, %d failed, %d retried",
		ex.GetSucceededCount(), ex.GetTaskCount(), ex.GetRunningCount(), ex.GetFailedCount(), ex.GetRetriedCount())
	if s == nil {
		return line
	}
	line += fmt.Sprintf("; images %d (written %d, error records %d, done before %d, transient %d), %.0f img/s",
		s.Processed(), s.Written, s.Failed, s.Done, s.Transient, s.Rate)
	if len(s.Errors) > 0 {
		line += "; errors " + errorCounts(s.Errors)
	}
	return line
}

func errorCounts(m map[string]int64) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	var b strings.Builder
	for i, k := range ks {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s=%d", k, m[k])
	}
	return b.String()
}

// printRun prints how an execution ended and its summary; an execution
// that did not succeed is an error.
func printRun(w io.Writer, ex *runpb.Execution, s *batch.Summary) error {
	cond := completed(ex)
	fmt.Fprintf(w, "%s: %s\n", ex.GetName(), dash(cond.GetMessage()))
	if s != nil {
		printSummary(w, s)
	}
	if cond.GetState() != runpb.Condition_CONDITION_SUCCEEDED && ex.GetCompletionTime() != nil {
		return fmt.Errorf("%s did not succeed: %s", ex.GetUid(), cond.GetMessage())
	}
	return nil
}

func completed(ex *runpb.Execution) *runpb.Condition {
	for _, c := range ex.GetConditions() {
		if c.GetType() == "Completed" {
			return c
		}
	}
	return nil
}

func printSummary(w io.Writer, s *batch.Summary) {
	fmt.Fprintf(w, "run %s over %s, model %s %s, %d tasks: %s\n", s.Execution, s.Prefix, s.Model.Name, s.Model.Version, s.Tasks, s.State)
	fmt.Fprintf(w, "  images %d: written %d, error records %d, done before %d, stale %d, name collisions %d, transient %d; other objects %d\n",
		s.Images, s.Written, s.Failed, s.Done, s.Stale, s.Collision, s.Transient, s.Other)
	fmt.Fprintf(w, "  %.1f s, %.1f images/s\n", s.Seconds, s.Rate)
	if len(s.Errors) > 0 {
		fmt.Fprintf(w, "  errors by kind: %s\n", errorCounts(s.Errors))
	}
	if s.Eval == nil || s.Accuracy == nil {
		fmt.Fprintln(w, "  no accuracy: the prefix's immediate sub-folders are not all labels of the model")
		return
	}
	fmt.Fprintf(w, "  accuracy %.4f over %d images (sub-folders as labels); confusion (rows expected, columns predicted):\n", *s.Accuracy, s.Eval.Evaluated)
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "\t")
	for _, l := range s.Eval.Labels {
		fmt.Fprintf(tw, "%s\t", l)
	}
	fmt.Fprintln(tw)
	for i, l := range s.Eval.Labels {
		fmt.Fprintf(tw, "%s\t", l)
		for _, n := range s.Eval.Matrix[i] {
			fmt.Fprintf(tw, "%d\t", n)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}

func readSummary(ctx context.Context, st blob.Store, key string) (*batch.Summary, error) {
	b, _, err := st.Read(ctx, key, 16<<20)
	if err != nil {
		return nil, err
	}
	var s batch.Summary
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("reading %s: %w", st.URI(key), err)
	}
	return &s, nil
}

// runBatchStatus is `orchard batch status`: an execution (default the
// job's latest) with its tasks' state and its summary.
func runBatchStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("batch status", stderr)
	rf := addRunFlags(fs)
	execution := fs.String("execution", "", "execution ID or full name (default the job's latest)")
	if err := parse(fs, args); err != nil {
		return err
	}
	c, job, err := rf.open(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	name := job.GetName()
	ex, err := pickExecution(ctx, c, name, *execution)
	if err != nil {
		return err
	}
	res, err := resultsStore(ctx, jobEnv(job))
	if err != nil {
		return err
	}
	sum := runSummary(ctx, res, ex.GetUid(), int(ex.GetTaskCount()))
	fmt.Fprintf(stdout, "%s (created %s): %s\n", ex.GetName(), ex.GetCreateTime().AsTime().Format(time.RFC3339), progressLine(ex, nil))
	if ex.GetCompletionTime() == nil {
		if sum != nil {
			fmt.Fprintln(stdout, "running; so far:")
			printSummary(stdout, sum)
		}
		return nil
	}
	return printRun(stdout, ex, sum)
}

func pickExecution(ctx context.Context, c *runClients, job, id string) (*runpb.Execution, error) {
	if id != "" {
		if !strings.Contains(id, "/") {
			id = job + "/executions/" + id
		}
		ex, err := c.execs.GetExecution(ctx, &runpb.GetExecutionRequest{Name: id})
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", id, err)
		}
		return ex, nil
	}
	ex, err := c.execs.ListExecutions(ctx, &runpb.ListExecutionsRequest{Parent: job, PageSize: 1}).Next()
	if errors.Is(err, iterator.Done) {
		return nil, fmt.Errorf("%s has no executions yet (orchard batch -prefix ... starts one)", job)
	}
	if err != nil {
		return nil, fmt.Errorf("listing the executions of %s: %w", job, err)
	}
	return ex, nil
}
