// Command orchard is the people's CLI for Orchard's training pipeline and
// model registry.
//
//	orchard train    [-topic T] -project P -data URI -name N [-set k=v ...] [-requester R] [-notes TEXT] [-allow-new-labels]
//	orchard versions -registry URI -name N [-json]
//	orchard promote  -registry URI -name N -version V [-margin M] [-allow-new-labels] [-force] [-alias A] [-reason TEXT]
//	orchard rollback -registry URI -name N [-to V] [-alias A] [-reason TEXT]
//	orchard alias show -registry URI -name N [-alias A]
//	orchard sweep    -spec FILE -data URI -image IMG -output gs://... -region R [-publish REGISTRY] [-wait=false]
//	orchard deadletters -subscription S [-project P]
//	orchard monitor  -results gs://BUCKET -registry gs://... [-window 1h] [-start T] [-end T]
//	orchard redrive  -subscription S [-project P] [-topic T] [-dry-run]
//	orchard batch    -prefix gs://... [-tasks N] [-model-version V] [-job J] [-region R] [-project P]
//	orchard batch status [-execution E] [-job J] [-region R] [-project P]
//
// train publishes a training request to the Pub/Sub topic SubmitTraining
// listens on (PUBSUB_EMULATOR_HOST selects the emulator; the project comes
// from -project or GOOGLE_CLOUD_PROJECT). The registry commands work on
// gs://bucket/prefix (STORAGE_EMULATOR_HOST selects fake-gcs-server),
// file:///dir or a local path. -notify-topic on promote and rollback
// publishes the model-published events watchers may listen to.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"os/user"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/orchard-mlops/orchard/functions/submittraining"
	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/gcp"
	"github.com/orchard-mlops/orchard/shared/pubsubx"
	"github.com/orchard-mlops/orchard/shared/registry"
)

// stores opens every URI a command touches, with the process's one storage
// client, made on the first gs:// URI (commands over local files need no
// credentials). main closes it.
var stores = blob.LazyOpener()

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	_ = stores.Close()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "orchard:", err)
		}
		var u usageError
		if errors.As(err, &u) || errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError struct{ error }

// command is one subcommand: its own function, flag set and -h. Adding one
// is one line in commands (with its func in its own file).
type command struct {
	name    string // "alias show" for a two-word command
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands is the dispatch table, in the order the usage lists them. It
// is filled in init because the commands' -h reads it.
var commands []command

func init() {
	commands = []command{
		{"train", "publish a training request (SubmitTraining starts a Vertex AI job)", runTrain},
		{"versions", "list a model's versions with metrics, aliases and gate decisions", runVersions},
		{"promote", "move production (or -alias) to a version through the quality gate", runPromote},
		{"rollback", "move production (or -alias) back to an earlier version", runRollback},
		{"alias show", "show an alias, who moved it, when, why, and its history", runAliasShow},
		{"sweep", "submit a sweep spec as a Vertex AI HyperparameterTuningJob, compare the trials, publish the best", runSweep},
		{"deadletters", "list dead-lettered events (object or request, attempts, last error)", runDeadLetters},
		{"redrive", "replay dead-lettered events to their function (after the cause is fixed)", runRedrive},
		{"monitor", "run the drift monitor over a window of predictions: reports per model version, WARNING lines, side-by-side figures", runMonitor},
		{"batch status", "show a batch prediction run (default the latest): tasks, counts, accuracy", runBatchStatus},
		{"batch", "classify every image below a gs:// prefix with the Cloud Run batch job, and follow the run", runBatch},
	}
}

func usage() string {
	var b strings.Builder
	b.WriteString("usage: orchard <command> [flags]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-12s %s\n", c.name, c.summary)
	}
	b.WriteString("\nrun \"orchard <command> -h\" for a command's flags.\n")
	return b.String()
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage())
		return usageError{errors.New("no command")}
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage())
		return nil
	}
	for _, c := range commands {
		words := strings.Fields(c.name)
		if len(args) >= len(words) && slices.Equal(args[:len(words)], words) {
			return c.run(ctx, args[len(words):], stdout, stderr)
		}
	}
	fmt.Fprint(stderr, usage())
	for _, c := range commands {
		if group, sub, ok := strings.Cut(c.name, " "); ok && group == args[0] {
			return usageError{fmt.Errorf("%q needs a subcommand: %s", group, sub)}
		}
	}
	return usageError{fmt.Errorf("unknown command %q", args[0])}
}

// flags returns a command's flag set, whose -h prints the command's
// summary and only its own flags.
func flags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("orchard "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		for _, c := range commands {
			if c.name == name {
				fmt.Fprintf(stderr, "usage: orchard %s [flags]\n\n%s\n\nflags:\n", name, c.summary)
			}
		}
		fs.PrintDefaults()
	}
	return fs
}

// registryFlags are the flags of the commands that work on the registry.
type registryFlags struct {
	uri, name, project, notifyTopic string
}

// addRegistryFlags adds -registry and -name and, for the commands that
// move aliases (notify), -notify-topic and -project.
func addRegistryFlags(fs *flag.FlagSet, notify bool) *registryFlags {
	var r registryFlags
	fs.StringVar(&r.uri, "registry", os.Getenv("REGISTRY_URI"), "registry URI: gs://bucket/prefix, file:///dir or a path (required; $REGISTRY_URI when set)")
	fs.StringVar(&r.name, "name", "", "model name (required)")
	if notify {
		fs.StringVar(&r.project, "project", defaultProject(), "Google Cloud project, for -notify-topic ($GOOGLE_CLOUD_PROJECT when set)")
		fs.StringVar(&r.notifyTopic, "notify-topic", os.Getenv("MODEL_PUBLISHED_TOPIC"), "Pub/Sub topic for model-published events: projects/P/topics/T or an ID in -project ($MODEL_PUBLISHED_TOPIC when set)")
	}
	return &r
}

func (r *registryFlags) open(ctx context.Context) (*registry.Registry, error) {
	return openRegistry(ctx, r.uri, r.name, r.project, r.notifyTopic)
}

// moveFlags are recorded with an alias move.
type moveFlags struct{ alias, reason, by string }

func addMoveFlags(fs *flag.FlagSet) *moveFlags {
	var m moveFlags
	fs.StringVar(&m.alias, "alias", registry.Production, "alias to move")
	fs.StringVar(&m.reason, "reason", "", "why (recorded with the alias move)")
	fs.StringVar(&m.by, "by", currentUser(), "who (recorded with the alias move)")
	return &m
}

func defaultProject() string { return gcp.Project() }

func runTrain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("train", stderr)
	topic := fs.String("topic", firstNonEmpty(os.Getenv("TRAINING_TOPIC"), "training-requests"), "topic SubmitTraining listens on: an ID in -project or projects/P/topics/T ($TRAINING_TOPIC when set; the local stack's is training-requests, Terraform's <prefix>-training-requests)")
	project := fs.String("project", defaultProject(), "Google Cloud project (required; $GOOGLE_CLOUD_PROJECT when set)")
	name := fs.String("name", "", "model name (required)")
	data := fs.String("data", "", "dataset URI (gs://bucket/prefix; local paths only for local runs)")
	var sets multi
	fs.Var(&sets, "set", "trainer config override k=v (repeatable)")
	requester := fs.String("requester", currentUser(), "requester, recorded with the job and the alias move")
	notes := fs.String("notes", "", "free-text notes, recorded with the job and the alias move")
	allowNew := fs.Bool("allow-new-labels", false, "a new label set is intended (quality gate)")
	if err := parse(fs, args); err != nil {
		return err
	}
	req := submittraining.Request{Dataset: *data, Model: *name, Overrides: sets, Requester: *requester, Notes: *notes, AllowNewLabels: *allowNew}
	// Check locally with the function's own rules (local data allowed:
	// the function decides), so mistakes fail here, not in a log.
	if err := req.Validate(true); err != nil {
		return usageError{err}
	}
	if *project == "" {
		return usageError{errors.New("-project or GOOGLE_CLOUD_PROJECT is required")}
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	pub, err := pubsubx.Dial(ctx, *project, *topic)
	if err != nil {
		return err
	}
	defer pub.Close()
	id, err := pub.Send(ctx, &pubsub.Message{Data: body, Attributes: map[string]string{"model": *name}})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "published training request %s for model %s (message %s)\n", *topic, *name, id)
	fmt.Fprintf(stdout, "the job will be named %s\n", first(submittraining.JobNames(*name, id)))
	return nil
}

func runVersions(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("versions", stderr)
	rf := addRegistryFlags(fs, false)
	asJSON := fs.Bool("json", false, "print JSON (snake_case keys, as in model.json)")
	if err := parse(fs, args); err != nil {
		return err
	}
	reg, err := rf.open(ctx)
	if err != nil {
		return err
	}
	vs, err := reg.Versions(ctx, rf.name)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(vs)
	}
	return printVersions(stdout, vs, reportLinks(ctx, reg, vs))
}

func runPromote(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("promote", stderr)
	rf := addRegistryFlags(fs, true)
	mf := addMoveFlags(fs)
	version := fs.String("version", "", "version to promote (required)")
	margin := fs.Float64("margin", 0, "accept up to this much lower validation accuracy than the current version")
	allowNew := fs.Bool("allow-new-labels", false, "accept a different label set")
	force := fs.Bool("force", false, "skip the quality gate (recorded)")
	evalURI := fs.String("eval", os.Getenv("EVAL_URI"), "the operator's evaluation set (folder per class) the gate scores both models on ($EVAL_URI when set)")
	if err := parse(fs, args); err != nil {
		return err
	}
	var eval *registry.EvalSet
	if *evalURI != "" {
		var err error
		if eval, err = registry.OpenEvalSet(ctx, stores, *evalURI); err != nil {
			return err
		}
	}
	if *version == "" {
		return usageError{errors.New("-version is required")}
	}
	reg, err := rf.open(ctx)
	if err != nil {
		return err
	}
	d, err := reg.Promote(ctx, rf.name, *version, registry.PromoteOptions{
		GateOptions: registry.GateOptions{Margin: *margin, AllowNewLabels: *allowNew},
		Alias:       mf.alias, By: mf.by, Reason: mf.reason, Force: *force, Eval: eval, Runtime: gateRuntime,
	})
	if err != nil {
		return err
	}
	if !d.Accepted {
		return fmt.Errorf("quality gate rejected %s %s: %s", rf.name, *version, d.Reason)
	}
	fmt.Fprintf(stdout, "%s of %s is now %s (%s)\n", mf.alias, rf.name, *version, d.Reason)
	return nil
}

func runRollback(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("rollback", stderr)
	rf := addRegistryFlags(fs, true)
	mf := addMoveFlags(fs)
	to := fs.String("to", "", "version to go back to (default: the previous one)")
	if err := parse(fs, args); err != nil {
		return err
	}
	reg, err := rf.open(ctx)
	if err != nil {
		return err
	}
	a, err := reg.Rollback(ctx, rf.name, registry.RollbackOptions{Alias: mf.alias, To: *to, By: mf.by, Reason: mf.reason})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s of %s is now %s (was %s)\n", mf.alias, rf.name, a.Version, prev(a))
	return nil
}

func runAliasShow(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("alias show", stderr)
	rf := addRegistryFlags(fs, false)
	alias := fs.String("alias", registry.Production, "alias to show")
	if err := parse(fs, args); err != nil {
		return err
	}
	reg, err := rf.open(ctx)
	if err != nil {
		return err
	}
	a, err := reg.Alias(ctx, rf.name, *alias)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s/%s -> %s\n  moved %s by %s (%s)\n  reason: %s\n  generation: %d\n",
		rf.name, *alias, a.Version, a.At.Format(time.RFC3339), dash(a.By), dash(a.Action), dash(a.Reason), a.Generation)
	if len(a.History) > 0 {
		fmt.Fprintln(stdout, "history (most recent first):")
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  VERSION\tAT\tBY\tACTION\tREASON")
		for _, h := range a.History {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", h.Version, h.At.Format(time.RFC3339), dash(h.By), dash(h.Action), dash(h.Reason))
		}
		tw.Flush()
	}
	return nil
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	if f := fs.Lookup("name"); f != nil && f.Value.String() == "" {
		return usageError{errors.New("-name is required")}
	}
	return nil
}

func openRegistry(ctx context.Context, uri, name, project, topic string) (*registry.Registry, error) {
	if uri == "" {
		return nil, usageError{errors.New("-registry or REGISTRY_URI is required")}
	}
	if err := registry.ValidName(name); err != nil {
		return nil, usageError{err}
	}
	o := registry.Options{Storage: stores}
	if topic != "" {
		n, err := pubsubx.DialModelNotifier(ctx, project, topic)
		if err != nil {
			return nil, usageError{err}
		}
		// The process ends right after one command: the client is not closed.
		o.Notifier = n
	}
	return registry.Open(ctx, uri, o)
}

func printVersions(w io.Writer, vs []registry.VersionInfo, reports []string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tCREATED\tVAL_ACC\tVAL_LOSS\tEPOCHS\tVAL_IMAGES\tLABELS\tALIASES\tGATE\tREPORT")
	for i, v := range vs {
		m := v.Metadata.Metrics
		gate := "-"
		if d := v.Decision; d != nil {
			gate = "rejected: " + d.Reason
			if d.Accepted {
				gate = "accepted"
			}
		}
		labels := strings.Join(v.Metadata.Labels, ",")
		if len(labels) > 40 {
			labels = fmt.Sprintf("%d labels", len(v.Metadata.Labels))
		}
		aliases := append([]string(nil), v.Aliases...)
		sort.Strings(aliases)
		fmt.Fprintf(tw, "%s\t%s\t%.4f\t%.4f\t%d\t%d\t%s\t%s\t%s\t%s\n", v.Version, v.Metadata.CreatedAt.Format(time.RFC3339),
			m.ValidationAccuracy, m.ValidationLoss, m.Epochs, m.ValidationImages, labels, dash(strings.Join(aliases, ",")), gate, dash(reports[i]))
	}
	return tw.Flush()
}

func prev(a *registry.Alias) string {
	if len(a.History) == 0 {
		return "-"
	}
	return a.History[0].Version
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func first(a, _ string) string { return a }

func currentUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return os.Getenv("USER")
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
