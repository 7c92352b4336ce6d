// Package predict is the logic behind Orchard's prediction functions, kept
// free of the Functions Framework so it can be tested over httptest and
// reused by other entry points:
//
//   - Service is the transport-free core: Classify takes a batch of sources
//     (bytes, or objects to read) and returns one Classification each, on a
//     bounded worker pool within the decode memory budget; ErrorKind sorts
//     every failure into the kinds answers, result files and metrics use;
//   - Results writes one result per source object generation (WriteOnce);
//   - Server is the Predict HTTP function over the Service (raw image,
//     multipart, gs:// URIs or a prefix with evaluation, see Evaluate; GET
//     for model information);
//   - Uploader is the PredictOnUpload CloudEvent function over the Service
//     and Results;
//   - App wires them from a Config (DefaultConfig holds the defaults,
//     ConfigFromEnv reads the environment over them).
//
// Every image goes through onnxrt.Classifier.Classify, the shared
// preprocessing path; this package has no preprocessing of its own.
//
// # Exactly one result per object generation
//
// PredictOnUpload writes gs://RESULTS_BUCKET/<object name>.json (or
// <object name>.error.json for images that can never be classified). The
// result object's metadata records the source generation
// (orchard-source-generation), so the idempotency key is
// bucket/name#generation, and writes are conditional:
//
//  1. Before any work, the existing result is looked up. If it describes
//     the event's generation, the event is a duplicate (no-op); if it
//     describes a newer generation, the event is stale (no-op).
//  2. Otherwise the result is created with a does-not-exist precondition.
//  3. If that fails because a result exists, its generation is read again:
//     same or newer source generation → no-op; older → it is replaced with
//     a generation-match precondition on the result object just read, so of
//     concurrent writers exactly one wins and the others find a duplicate.
//
// An overwrite of the source object (a new generation) therefore replaces
// the result once, a redelivery never does, and a late redelivery of an
// older generation never replaces a newer result. Results are published to
// PREDICTIONS_TOPIC after the write; a failed publish returns an error so
// the event is redelivered, and a redelivery that finds its result
// publishes the stored result again. Messages are thus at least once, with
// an idempotency_key attribute (bucket/name#generation) for subscribers.
//
// # Failures
//
// Permanent failures (undecodable, unsupported or oversized images, object
// gone) are recorded in .error.json and acknowledged. Transient ones
// (storage errors, model not loadable yet, publish failures) return an error
// so Eventarc redelivers. Malformed events are logged and acknowledged. A
// configuration that would write results into the trigger bucket refuses
// every event without writing anything.
package predict
