package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/orchard-mlops/orchard/infra/local/eventarc"
	"github.com/orchard-mlops/orchard/shared/errlist"
	"github.com/orchard-mlops/orchard/shared/gcp"
	"github.com/orchard-mlops/orchard/shared/pubsubx"
)

// Dead letters are the messages Pub/Sub (or the local Eventarc bridge) gave
// up on: an upload's storage notification, or a training request. They sit
// on a dead-letter subscription (Terraform: <prefix>-upload-events-dead-letter
// and <prefix>-training-requests-dead-letter; locally eventarc-dead-letter)
// until `orchard redrive` publishes each back to the topic of the
// subscription it was dead-lettered from, so its trigger delivers it to its
// function again; the functions are idempotent (results keyed on
// bucket/name#generation, jobs on the message ID), so a redriven event
// never doubles a result.

// Attributes Pub/Sub itself adds to a dead-lettered message.
const (
	attrPSSubscription  = "CloudPubSubDeadLetterSourceSubscription"
	attrPSDeliveryCount = "CloudPubSubDeadLetterSourceDeliveryCount"
)

// deadLetter is one pulled dead-lettered message.
type deadLetter struct {
	ackID string
	msg   *pubsubpb.PubsubMessage
}

// source is the subscription it was dead-lettered from.
func (d deadLetter) source(project string) string {
	a := d.msg.GetAttributes()
	s := firstNonEmpty(a[eventarc.AttrSubscription], a[attrPSSubscription])
	if s != "" && !strings.HasPrefix(s, "projects/") {
		s = "projects/" + project + "/subscriptions/" + s
	}
	return s
}

// what names the event: the uploaded object, or the request's first bytes.
func (d deadLetter) what() string {
	a := d.msg.GetAttributes()
	if a["objectId"] != "" {
		return "gs://" + a["bucketId"] + "/" + a["objectId"] + "#" + a["objectGeneration"]
	}
	data := string(d.msg.GetData())
	if len(data) > 60 {
		data = data[:60] + "..."
	}
	return "request " + strings.Join(strings.Fields(data), " ")
}

func (d deadLetter) attempts() string {
	a := d.msg.GetAttributes()
	return dash(firstNonEmpty(a[eventarc.AttrAttempts], a[attrPSDeliveryCount]))
}

// lastError is the bridge's reason; Pub/Sub records none (see the
// function's logs for the message ID).
func (d deadLetter) lastError() string {
	return dash(d.msg.GetAttributes()[eventarc.AttrReason])
}

// original is the message as first published: data and attributes without
// those dead-lettering added.
func (d deadLetter) original() *pubsub.Message {
	attrs := map[string]string{}
	for k, v := range d.msg.GetAttributes() {
		if !strings.HasPrefix(k, "orchard-dead-letter-") && !strings.HasPrefix(k, "CloudPubSubDeadLetter") {
			attrs[k] = v
		}
	}
	return &pubsub.Message{Data: d.msg.GetData(), Attributes: attrs, OrderingKey: d.msg.GetOrderingKey()}
}

// deadLetterFlags are the flags both commands share.
type deadLetterFlags struct {
	sub, project *string
	max          *int
	wait         *time.Duration
}

func newDeadLetterFlags(fs *flag.FlagSet) deadLetterFlags {
	return deadLetterFlags{
		sub:     fs.String("subscription", os.Getenv("DEAD_LETTER_SUBSCRIPTION"), "dead-letter subscription: an ID in -project or projects/P/subscriptions/S (default $DEAD_LETTER_SUBSCRIPTION)"),
		project: fs.String("project", defaultProject(), "Google Cloud project ($GOOGLE_CLOUD_PROJECT when set)"),
		max:     fs.Int("max", 1000, "at most this many messages"),
		wait:    fs.Duration("wait", 3*time.Second, "stop when a pull finds nothing for this long"),
	}
}

func (f deadLetterFlags) parse(fs *flag.FlagSet, args []string) (string, error) {
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if fs.NArg() > 0 {
		return "", usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	if *f.project == "" {
		return "", usageError{errors.New("-project or GOOGLE_CLOUD_PROJECT is required")}
	}
	if *f.sub == "" {
		return "", usageError{errors.New("-subscription or DEAD_LETTER_SUBSCRIPTION is required")}
	}
	if strings.HasPrefix(*f.sub, "projects/") {
		return *f.sub, nil
	}
	return "projects/" + *f.project + "/subscriptions/" + *f.sub, nil
}

// pullDeadLetters pulls up to max messages, leaving them outstanding (the
// caller acknowledges or releases each).
func pullDeadLetters(ctx context.Context, c *pubsub.Client, sub string, max int, wait time.Duration) ([]deadLetter, error) {
	var out []deadLetter
	for len(out) < max {
		pctx, cancel := context.WithTimeout(ctx, wait)
		resp, err := c.SubscriptionAdminClient.Pull(pctx, &pubsubpb.PullRequest{Subscription: sub, MaxMessages: int32(min(max-len(out), 100))})
		cancel()
		if status.Code(err) == codes.DeadlineExceeded || errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil {
			return out, fmt.Errorf("pulling %s: %w", sub, err)
		}
		if len(resp.GetReceivedMessages()) == 0 {
			break
		}
		for _, m := range resp.GetReceivedMessages() {
			out = append(out, deadLetter{ackID: m.GetAckId(), msg: m.GetMessage()})
		}
	}
	return out, nil
}

// release makes messages deliverable again at once.
func release(ctx context.Context, c *pubsub.Client, sub string, dls []deadLetter) error {
	ids := ackIDs(dls)
	if len(ids) == 0 {
		return nil
	}
	return c.SubscriptionAdminClient.ModifyAckDeadline(context.WithoutCancel(ctx), &pubsubpb.ModifyAckDeadlineRequest{Subscription: sub, AckIds: ids})
}

// acknowledge removes messages from the subscription for good.
func acknowledge(ctx context.Context, c *pubsub.Client, sub string, dls []deadLetter) error {
	ids := ackIDs(dls)
	if len(ids) == 0 {
		return nil
	}
	return c.SubscriptionAdminClient.Acknowledge(context.WithoutCancel(ctx), &pubsubpb.AcknowledgeRequest{Subscription: sub, AckIds: ids})
}

func ackIDs(dls []deadLetter) []string {
	var ids []string
	for _, d := range dls {
		ids = append(ids, d.ackID)
	}
	return ids
}

// runDeadLetters lists dead-lettered events without consuming them.
func runDeadLetters(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("deadletters", stderr)
	f := newDeadLetterFlags(fs)
	sub, err := f.parse(fs, args)
	if err != nil {
		return err
	}
	c, err := pubsub.NewClient(ctx, *f.project)
	if err != nil {
		return err
	}
	defer c.Close()
	dls, err := pullDeadLetters(ctx, c, sub, *f.max, *f.wait)
	defer func() { _ = release(ctx, c, sub, dls) }()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MESSAGE\tPUBLISHED\tEVENT\tATTEMPTS\tFROM\tLAST ERROR")
	for _, d := range dls {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.msg.GetMessageId(), d.msg.GetPublishTime().AsTime().UTC().Format(time.RFC3339),
			d.what(), d.attempts(), dash(d.source(*f.project)), d.lastError())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d dead-lettered message(s) on %s\n", len(dls), sub)
	return nil
}

// runRedrive publishes each dead letter back to the topic of the
// subscription it came from, then acknowledges it; a message that cannot
// be republished stays on the dead-letter subscription.
func runRedrive(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("redrive", stderr)
	f := newDeadLetterFlags(fs)
	toTopic := fs.String("topic", "", "publish every message to this topic instead of its source subscription's")
	dryRun := fs.Bool("dry-run", false, "show what would be redriven; change nothing")
	sub, err := f.parse(fs, args)
	if err != nil {
		return err
	}
	c, err := pubsub.NewClient(ctx, *f.project)
	if err != nil {
		return err
	}
	defer c.Close()
	dls, err := pullDeadLetters(ctx, c, sub, *f.max, *f.wait)
	if err != nil {
		_ = release(ctx, c, sub, dls)
		return err
	}
	topics := map[string]string{} // source subscription -> its topic
	pubs := pubsubx.NewPublishers(c)
	defer pubs.Close()
	var done, failed []deadLetter
	var errs []error
	for _, d := range dls {
		topic, err := redriveTopic(ctx, c, d, *f.project, *toTopic, topics)
		if err == nil && !*dryRun {
			_, err = pubs.For(topic).Send(ctx, d.original())
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("message %s: %w", d.msg.GetMessageId(), err))
			failed = append(failed, d)
			continue
		}
		fmt.Fprintf(stdout, "redrive %s %s -> %s\n", d.msg.GetMessageId(), d.what(), topic)
		done = append(done, d)
	}
	if *dryRun {
		failed = append(failed, done...)
		done = nil
	}
	if err := acknowledge(ctx, c, sub, done); err != nil {
		errs = append(errs, fmt.Errorf("acknowledging redriven messages (they may be redriven twice; the functions are idempotent): %w", err))
	}
	if err := release(ctx, c, sub, failed); err != nil {
		errs = append(errs, err)
	}
	fmt.Fprintf(stdout, "%d redriven, %d left on %s\n", len(done), len(failed), sub)
	return errlist.Join(errs...)
}

// redriveTopic is where a dead letter goes back to.
func redriveTopic(ctx context.Context, c *pubsub.Client, d deadLetter, project, override string, cache map[string]string) (string, error) {
	if override != "" {
		return gcp.TopicName(project, override)
	}
	src := d.source(project)
	if src == "" {
		return "", errors.New("no source subscription recorded; pass -topic")
	}
	if t, ok := cache[src]; ok {
		return t, nil
	}
	s, err := c.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: src})
	if err != nil {
		return "", fmt.Errorf("looking up source subscription %s: %w", src, err)
	}
	cache[src] = s.GetTopic()
	return s.GetTopic(), nil
}
