// Command orchard is the people's CLI for Orchard's training pipeline and
// model registry.
//
//	orchard train    -topic T -data URI -name N [-set k=v ...] [-requester R] [-notes TEXT] [-allow-new-labels] [-project P]
//	orchard versions -registry URI -name N [-json]
//	orchard promote  -registry URI -name N -version V [-margin M] [-allow-new-labels] [-force] [-alias A] [-reason TEXT]
//	orchard rollback -registry URI -name N [-to V] [-alias A] [-reason TEXT]
//	orchard alias show -registry URI -name N [-alias A]
//	orchard sweep    -spec FILE -data URI -image IMG -output gs://... -region R [-publish REGISTRY] [-wait=false]
//	orchard deadletters -subscription S [-project P]
//	orchard redrive  -subscription S [-project P] [-topic T] [-dry-run]
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
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/orchard-mlops/orchard/functions/submittraining"
	"github.com/orchard-mlops/orchard/shared/registry"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
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

const usage = `usage: orchard <command> [flags]

commands:
  train      publish a training request (SubmitTraining starts a Vertex AI job)
  versions   list a model's versions with metrics, aliases and gate decisions
  promote    move production (or -alias) to a version through the quality gate
  rollback   move production (or -alias) back to an earlier version
  alias show show an alias, who moved it, when, why, and its history
  sweep      submit a sweep spec as a Vertex AI HyperparameterTuningJob, compare the trials, publish the best
  deadletters list dead-lettered events (object or request, attempts, last error)
  redrive    replay dead-lettered events to their function (after the cause is fixed)

run "orchard <command> -h" for a command's flags.
`

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{errors.New("no command")}
	}
	cmd, args := args[0], args[1:]
	if cmd == "sweep" {
		return runSweep(ctx, args, stdout, stderr)
	}
	if cmd == "-h" || cmd == "-help" || cmd == "--help" || cmd == "help" {
		fmt.Fprint(stdout, usage)
		return nil
	}
	if cmd == "alias" {
		if len(args) == 0 || args[0] != "show" {
			fmt.Fprint(stderr, usage)
			return usageError{errors.New(`"alias" needs a subcommand: show`)}
		}
		cmd, args = "alias show", args[1:]
	}
	switch cmd {
	case "deadletters":
		return runDeadLetters(ctx, args, stdout, stderr)
	case "redrive":
		return runRedrive(ctx, args, stdout, stderr)
	}
	fs := flag.NewFlagSet("orchard "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	regURI := fs.String("registry", os.Getenv("REGISTRY_URI"), "registry URI (gs://bucket/prefix, file:///dir or a path; default $REGISTRY_URI)")
	name := fs.String("name", "", "model name")
	alias := fs.String("alias", registry.Production, "alias")
	reason := fs.String("reason", "", "why (recorded with the alias move)")
	by := fs.String("by", currentUser(), "who (recorded)")
	notifyTopic := fs.String("notify-topic", os.Getenv("MODEL_PUBLISHED_TOPIC"), "Pub/Sub topic for model-published events: projects/P/topics/T or an ID in -project (default $MODEL_PUBLISHED_TOPIC)")
	project := fs.String("project", firstNonEmpty(os.Getenv("GOOGLE_CLOUD_PROJECT"), os.Getenv("GCP_PROJECT")), "Google Cloud project")

	switch cmd {
	case "train":
		topic := fs.String("topic", firstNonEmpty(os.Getenv("TRAINING_TOPIC"), "training-requests"), "topic SubmitTraining listens on: an ID in -project or projects/P/topics/T (default $TRAINING_TOPIC, else training-requests, the local stack's; Terraform names it <prefix>-training-requests)")
		data := fs.String("data", "", "dataset URI (gs://bucket/prefix; local paths only for local runs)")
		var sets multi
		fs.Var(&sets, "set", "trainer config override k=v (repeatable)")
		requester := fs.String("requester", currentUser(), "requester recorded with the job")
		notes := fs.String("notes", "", "free-text notes")
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
		c, err := pubsub.NewClient(ctx, *project)
		if err != nil {
			return err
		}
		defer c.Close()
		pub := c.Publisher(*topic)
		defer pub.Stop()
		id, err := pub.Publish(ctx, &pubsub.Message{Data: body, Attributes: map[string]string{"model": *name}}).Get(ctx)
		if err != nil {
			return fmt.Errorf("publishing to %s: %w", *topic, err)
		}
		fmt.Fprintf(stdout, "published training request %s for model %s (message %s)\n", *topic, *name, id)
		fmt.Fprintf(stdout, "the job will be named %s\n", first(submittraining.JobNames(*name, id)))
		return nil

	case "versions":
		asJSON := fs.Bool("json", false, "print JSON")
		if err := parse(fs, args); err != nil {
			return err
		}
		reg, err := openRegistry(ctx, *regURI, *name, *project, *notifyTopic)
		if err != nil {
			return err
		}
		vs, err := reg.Versions(ctx, *name)
		if err != nil {
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(vs)
		}
		return printVersions(stdout, vs, reportLinks(ctx, vs))

	case "promote":
		version := fs.String("version", "", "version to promote")
		margin := fs.Float64("margin", 0, "accept up to this much lower validation accuracy than the current version")
		allowNew := fs.Bool("allow-new-labels", false, "accept a different label set")
		force := fs.Bool("force", false, "skip the quality gate (recorded)")
		evalURI := fs.String("eval", os.Getenv("EVAL_URI"), "the operator's evaluation set (folder per class) the gate scores both models on (default $EVAL_URI)")
		if err := parse(fs, args); err != nil {
			return err
		}
		var eval *registry.EvalSet
		if *evalURI != "" {
			var err error
			if eval, err = registry.OpenEvalSet(ctx, *evalURI); err != nil {
				return err
			}
		}
		if *version == "" {
			return usageError{errors.New("-version is required")}
		}
		reg, err := openRegistry(ctx, *regURI, *name, *project, *notifyTopic)
		if err != nil {
			return err
		}
		d, err := reg.Promote(ctx, *name, *version, registry.PromoteOptions{
			GateOptions: registry.GateOptions{Margin: *margin, AllowNewLabels: *allowNew},
			Alias:       *alias, By: *by, Reason: *reason, Force: *force, Eval: eval,
		})
		if err != nil {
			return err
		}
		if !d.Accepted {
			return fmt.Errorf("quality gate rejected %s %s: %s", *name, *version, d.Reason)
		}
		fmt.Fprintf(stdout, "%s of %s is now %s (%s)\n", *alias, *name, *version, d.Reason)
		return nil

	case "rollback":
		to := fs.String("to", "", "version to go back to (default: the previous one)")
		if err := parse(fs, args); err != nil {
			return err
		}
		reg, err := openRegistry(ctx, *regURI, *name, *project, *notifyTopic)
		if err != nil {
			return err
		}
		a, err := reg.Rollback(ctx, *name, registry.RollbackOptions{Alias: *alias, To: *to, By: *by, Reason: *reason})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s of %s is now %s (was %s)\n", *alias, *name, a.Version, prev(a))
		return nil

	case "alias show":
		if err := parse(fs, args); err != nil {
			return err
		}
		reg, err := openRegistry(ctx, *regURI, *name, *project, *notifyTopic)
		if err != nil {
			return err
		}
		a, err := reg.Alias(ctx, *name, *alias)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s/%s -> %s\n  moved %s by %s (%s)\n  reason: %s\n  generation: %d\n",
			*name, *alias, a.Version, a.At.Format(time.RFC3339), dash(a.By), dash(a.Action), dash(a.Reason), a.Generation)
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
	fmt.Fprint(stderr, usage)
	return usageError{fmt.Errorf("unknown command %q", cmd)}
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
	var o registry.Options
	if topic != "" {
		n, err := registry.DialPubSubNotifier(ctx, project, topic)
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
