// Package eventarc is a local stand-in for Eventarc: it turns Pub/Sub
// messages into the binary-mode CloudEvents Eventarc delivers and POSTs them
// to a target (a Functions Framework server), with Eventarc's delivery
// semantics.
//
// # Sources
//
// A Storage route pulls the Cloud Storage notifications that
// fake-gcs-server (or GCS) publishes to a topic (attributes bucketId,
// objectId, objectGeneration, eventType, eventTime; data the object
// resource) and delivers google.cloud.storage.object.v1.finalized (and, if
// the route asks, deleted/archived/metadataUpdated) events: ce-id is the
// Pub/Sub message ID (a redelivery keeps it), ce-source
// //storage.googleapis.com/projects/_/buckets/B, ce-subject objects/NAME,
// ce-time the notification's eventTime, body the object resource
// normalised to what Eventarc sends (see FromStorageNotification). Event
// types and the bucket are filtered per route, as a trigger's filters do;
// filtered messages are acknowledged.
//
// A PubSub route delivers any message as
// google.cloud.pubsub.topic.v1.messagePublished, ce-source
// //pubsub.googleapis.com/projects/P/topics/T, body
// {"message":{"data":base64,"attributes":{},"messageId","publishTime",...},"subscription":...}.
//
// # Delivery, retries and dead letters
//
// 2xx acknowledges the message. Any other status, or a transport error, is
// a failed attempt: the bridge waits MinBackoff*2^(attempt-1) (capped at
// MaxBackoff) while holding the message (the client keeps extending its ack
// deadline), then nacks it, and Pub/Sub redelivers it: at least once, the
// same ce-id every time. On the MaxAttempts-th failed attempt the bridge
// publishes the message to the route's dead-letter topic with its original
// data and attributes plus orchard-dead-letter-* attributes saying why
// (reason, HTTP status, attempts, route, target, subscription, message ID,
// event type), then acknowledges it. A message that cannot be converted at
// all is dead-lettered on its first delivery.
//
// Attempts are counted by the server: Setup gives each subscription a
// dead-letter policy, so messages carry Pub/Sub's delivery_attempt, which
// survives a bridge restart (a bridge-side count is the fallback for
// subscriptions without a policy). The dead-letter policy
// (max_delivery_attempts = max(MaxAttempts, 5)) is also the backstop: if
// the bridge cannot publish a dead letter it nacks, and Pub/Sub forwards the
// message itself.
//
// Why the backoff and the dead-lettering are the bridge's, not only the
// subscription's: measured on the Cloud SDK emulator, a retry policy of
// 300ms..2s gave redeliveries after 0.05s, 1.9s, 2s and 2s (coarse and not
// exponential), its dead-letter policy refuses max_delivery_attempts below 5,
// and its forwarded dead letters carry only CloudPubSubDeadLetterSource*
// attributes (no reason); pstest ignores retry policies altogether. Doing
// both in the bridge gives the same, testable behaviour on both backends,
// millisecond backoffs in tests, any MaxAttempts, and dead letters that say
// why.
//
// Concurrency: at most Concurrency POSTs are in flight across routes; each
// route holds at most MaxOutstanding messages (including those waiting out
// a backoff). Run returns when its context ends, after the messages in hand
// are settled: POSTs in flight get DrainTimeout to finish, after which they
// are cancelled and their messages nacked for redelivery.
package eventarc
