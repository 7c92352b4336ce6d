package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/orchard-mlops/orchard/functions/submittraining"
	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/emulators"
	"github.com/orchard-mlops/orchard/shared/model/modeltest"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/registry"
)

func TestMain(m *testing.M) { os.Exit(emulators.RunTests(m)) }

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(t.Context(), args, &out, &errb)
	return out.String() + errb.String(), err
}

func TestRegistryCommands(t *testing.T) {
	dir := t.TempDir()
	reg, err := registry.Open(t.Context(), dir, registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []struct {
		version string
		acc     float64
	}{{"v1", 0.9}, {"v2", 0.95}, {"v3", 0.7}} {
		src, _ := blob.NewDir(t.TempDir())
		modeltest.Save(t, modeltest.Colour(t, modeltest.Options{Version: v.version, Accuracy: v.acc}), src)
		if _, err := registry.PublishFrom(t.Context(), reg, src, registry.PublishOptions{Runtime: onnxrt.Runtime{}, Promote: v.version == "v1"}); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		args    []string
		wantErr bool
		want    []string
	}{
		{[]string{"promote", "-registry", dir, "-name", "colours", "-version", "v2", "-reason", "better", "-by", "bob"}, false, []string{"production of colours is now v2"}},
		{[]string{"promote", "-registry", dir, "-name", "colours", "-version", "v3"}, true, []string{"quality gate rejected", "below production v2"}},
		{[]string{"versions", "-registry", dir, "-name", "colours"}, false, []string{"VERSION", "v1", "0.9000", "v2", "production", "accepted", "v3", "rejected: validation accuracy 0.7000"}},
		{[]string{"alias", "show", "-registry", dir, "-name", "colours"}, false, []string{"colours/production -> v2", "by bob (promote)", "history", "v1"}},
		{[]string{"rollback", "-registry", dir, "-name", "colours", "-reason", "oops"}, false, []string{"production of colours is now v1 (was v2)"}},
		{[]string{"promote", "-registry", dir, "-name", "colours", "-version", "v3", "-force"}, false, []string{"now v3", "forced"}},
		{[]string{"versions", "-registry", dir, "-name", "colours", "-json"}, false, []string{`"version": "v3"`, `"validation_accuracy": 0.7`, `"aliases": [`}},
		{[]string{"versions", "-registry", dir}, true, []string{"-name is required"}},
		{[]string{"alias", "list"}, true, []string{"needs a subcommand"}},
		{[]string{"frobnicate"}, true, []string{"unknown command"}},
		{[]string{"train", "-name", "Bad", "-data", "gs://b/d", "-project", "p"}, true, []string{"model \"Bad\""}},
		// The same allow-list and bounds SubmitTraining applies (config.CheckRequest).
		{[]string{"train", "-name", "fruits", "-data", "gs://b/d", "-project", "p", "-set", "train.epochz=3"}, true, []string{"unknown key"}},
		{[]string{"train", "-name", "fruits", "-data", "gs://b/d", "-project", "p", "-set", "data.validation_fraction=0.01"}, true, []string{"validation split is the operator's"}},
	}
	for _, s := range steps {
		out, err := runCLI(t, s.args...)
		if (err != nil) != s.wantErr {
			t.Errorf("%q: err %v, wantErr %v\n%s", s.args, err, s.wantErr, out)
		}
		text := out
		if err != nil {
			text += err.Error()
		}
		for _, w := range s.want {
			if !strings.Contains(text, w) {
				t.Errorf("%q: output lacks %q:\n%s", s.args, w, text)
			}
		}
	}
}

// Each command's -h shows its own flags only, each default once.
func TestPerCommandHelp(t *testing.T) {
	t.Setenv("TRAINING_TOPIC", "")
	for _, tc := range []struct {
		args      []string
		want, not []string
	}{
		{[]string{"train", "-h"}, []string{"usage: orchard train", "-topic", "-data", "-requester", "-notes", `(default "training-requests")`}, []string{"-registry", "-version", "-json", "-alias"}},
		{[]string{"versions", "-h"}, []string{"-registry", "-name", "-json"}, []string{"-topic", "-version", "-data", "-alias", "-project"}},
		{[]string{"promote", "-h"}, []string{"-version", "-margin", "-force", "-alias", "-reason", "-notify-topic"}, []string{"  -topic", "-data", "-json", "-to "}},
		{[]string{"alias", "show", "-h"}, []string{"usage: orchard alias show", "-alias"}, []string{"-reason", "-topic"}},
	} {
		out, err := runCLI(t, tc.args...)
		if err == nil {
			t.Errorf("%q: want flag.ErrHelp", tc.args)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%q: help lacks %q:\n%s", tc.args, w, out)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(out, n) {
				t.Errorf("%q: help shows another command's %q:\n%s", tc.args, n, out)
			}
		}
		if n := strings.Count(out, "training-requests\")"); n > 1 {
			t.Errorf("%q: the -topic default is printed %d times:\n%s", tc.args, n, out)
		}
	}
}

func TestTrainPublishesRequest(t *testing.T) {
	ps := emulators.PubSubForTest(t, emulators.UniqueName(t))
	ps.Setenv(t)
	c := ps.ClientForTest(t)
	ctx := t.Context()
	if _, err := c.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: ps.TopicName("training-requests")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: ps.SubscriptionName("sub-1"), Topic: ps.TopicName("training-requests")}); err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(t, "train", "-topic", "training-requests", "-data", "gs://bucket/data", "-name", "fruits",
		"-set", "train.epochs=1", "-requester", "carol", "-notes", "hello")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var got *submittraining.Request
	err = c.Subscriber("sub-1").Receive(rctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		r, err := submittraining.ParseRequest(m.Data, submittraining.Policy{})
		if err != nil {
			t.Errorf("the CLI published a request the function refuses: %v", err)
		}
		got = r
		cancel()
	})
	if err != nil {
		t.Fatal(err)
	}
	if got == nil || got.Model != "fruits" || got.Dataset != "gs://bucket/data" || got.Overrides[0] != "train.epochs=1" || got.Requester != "carol" {
		t.Errorf("request = %+v", got)
	}
	if !strings.Contains(out, "orchard-train-fruits-") {
		t.Errorf("output: %s", out)
	}
}
