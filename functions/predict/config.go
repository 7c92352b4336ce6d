package predict

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/orchard-mlops/orchard/shared/env"
	"github.com/orchard-mlops/orchard/shared/gcp"
	"github.com/orchard-mlops/orchard/shared/memlimit"
	"github.com/orchard-mlops/orchard/shared/preprocess"
)

// Defaults for Config.
const (
	DefaultTopK         = 5
	DefaultMaxBodyBytes = 32 << 20 // the Cloud Run request limit
	DefaultMaxObjects   = 256
	DefaultRetryAfter   = 5 * time.Second
	DefaultDecodeWait   = 2 * time.Second
	// DecodeMemoryShare is the default decode budget's share of the
	// container's memory limit (of the machine's memory outside one). With
	// GOMEMLIMIT at 60% (shared/memlimit), it leaves room for the model, the
	// request bodies and garbage not yet collected: on Cloud Run's 2 GiB,
	// 820 MB, two 39 MP 16-bit PNGs or five 8-bit ones at a time.
	DecodeMemoryShare = 0.4
)

// DefaultContentTypes are the upload content types classified when
// UPLOAD_CONTENT_TYPES is unset.
var DefaultContentTypes = []string{"image/jpeg", "image/png", "image/webp"}

// Config is everything the functions read from the environment. Field
// comments name the variable.
type Config struct {
	ModelURI       string        // MODEL_URI: gs://bucket/prefix, file:///dir or a path (takes precedence over REGISTRY_URI)
	RegistryURI    string        // REGISTRY_URI: serve an alias of a registry model instead of MODEL_URI
	ModelName      string        // MODEL_NAME: the registry model to serve
	ModelAlias     string        // MODEL_ALIAS: the alias to follow (default production)
	ModelPoll      time.Duration // MODEL_POLL_SECONDS: least time between two checks of the alias (default 10s)
	IntraOpThreads int           // INTRA_OP_THREADS: onnxruntime threads per inference (default 1)
	TopK           int           // TOP_K: default top_k (default 5)
	MaxBodyBytes   int64         // MAX_BODY_BYTES: HTTP request body cap (default 32 MiB)
	MaxImageBytes  int64         // MAX_IMAGE_BYTES: cap on one image or object (default 32 MiB)
	MaxImagePixels int64         // MAX_IMAGE_PIXELS: cap on width*height (default 40 MP)
	MaxObjects     int           // MAX_OBJECTS: images per multipart, uris or prefix request (default 256)
	Workers        int           // WORKERS: concurrent reads+classifications per request (default 2*GOMAXPROCS)
	AllowedBuckets []string      // PREDICT_ALLOWED_BUCKETS: buckets JSON requests may read (default none: gs:// requests are refused)
	ModelRetry     time.Duration // MODEL_RETRY_MAX_SECONDS: longest wait between failed model loads (default 30s)
	StorageTimeout time.Duration // STORAGE_TIMEOUT_SECONDS: bound on one storage call (read, list, stat, write), retries included (default 30s)
	DecodeMemory   int64         // DECODE_MEMORY_BYTES: memory all concurrent image decodes may hold together (default DecodeMemoryShare of the container's memory)
	DecodeWait     time.Duration // DECODE_WAIT_MS: how long a decode waits for room in that budget before the answer is 503 or the event is retried (default 2s)

	// PredictOnUpload.
	ResultsBucket  string   // RESULTS_BUCKET (required for PredictOnUpload)
	UploadBucket   string   // UPLOAD_BUCKET: the trigger bucket, if known; events from others are skipped
	UploadPrefixes []string // UPLOAD_PREFIXES: comma-separated object-name prefixes to classify (default all)
	ContentTypes   []string // UPLOAD_CONTENT_TYPES: comma-separated; "image/*" or "*" wildcards (default jpeg, png, webp)
	Topic          string   // PREDICTIONS_TOPIC: Pub/Sub topic ID or projects/P/topics/T (optional)
	Project        string   // GOOGLE_CLOUD_PROJECT (see gcp.ProjectEnv): the topic's project
}

// Limits are the preprocessing limits the config implies.
func (c Config) Limits() preprocess.Limits {
	return preprocess.Limits{MaxBytes: c.MaxImageBytes, MaxPixels: c.MaxImagePixels}
}

// DefaultConfig is the configuration with nothing set: the one place the
// defaults are written. A Config is used as it is (zero fields are not
// defaulted again), so build one from DefaultConfig or ConfigFromEnv.
func DefaultConfig() Config {
	return Config{
		ModelAlias:     "production",
		ModelPoll:      10 * time.Second,
		IntraOpThreads: 1,
		TopK:           DefaultTopK,
		MaxBodyBytes:   DefaultMaxBodyBytes,
		MaxImageBytes:  preprocess.DefaultMaxBytes,
		MaxImagePixels: preprocess.DefaultMaxPixels,
		MaxObjects:     DefaultMaxObjects,
		Workers:        2 * runtime.GOMAXPROCS(0),
		ModelRetry:     30 * time.Second,
		StorageTimeout: DefaultStorageTimeout,
		DecodeMemory:   defaultDecodeMemory(),
		DecodeWait:     DefaultDecodeWait,
		ContentTypes:   DefaultContentTypes,
	}
}

// DefaultStorageTimeout bounds one storage call. The storage client
// retries failed calls until its context ends, so without a bound an
// outage would hold requests open indefinitely.
const DefaultStorageTimeout = 30 * time.Second

// defaultDecodeMemory is DecodeMemoryShare of the memory limit.
func defaultDecodeMemory() int64 {
	n, _ := memlimit.Limit()
	if n <= 0 {
		n = 2 << 30 // unknown: Cloud Run's size for these functions
	}
	return int64(float64(n) * DecodeMemoryShare)
}

// ConfigFromEnv reads the configuration over DefaultConfig; getenv is
// os.Getenv in production. Malformed numbers are errors, never silently
// defaulted.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	d := DefaultConfig()
	e := env.New(getenv)
	c := Config{
		ModelURI:       e.String("MODEL_URI", ""),
		RegistryURI:    e.String("REGISTRY_URI", ""),
		ModelName:      e.String("MODEL_NAME", ""),
		ModelAlias:     e.String("MODEL_ALIAS", d.ModelAlias),
		ModelPoll:      e.Duration("MODEL_POLL_SECONDS", d.ModelPoll, time.Second, time.Second),
		IntraOpThreads: int(e.Int("INTRA_OP_THREADS", int64(d.IntraOpThreads), 1)),
		TopK:           int(e.Int("TOP_K", int64(d.TopK), 1)),
		MaxBodyBytes:   e.Int("MAX_BODY_BYTES", d.MaxBodyBytes, 1),
		MaxImageBytes:  e.Int("MAX_IMAGE_BYTES", d.MaxImageBytes, 1),
		MaxImagePixels: e.Int("MAX_IMAGE_PIXELS", d.MaxImagePixels, 1),
		MaxObjects:     int(e.Int("MAX_OBJECTS", int64(d.MaxObjects), 1)),
		Workers:        int(e.Int("WORKERS", int64(d.Workers), 1)),
		AllowedBuckets: e.List("PREDICT_ALLOWED_BUCKETS"),
		ModelRetry:     e.Duration("MODEL_RETRY_MAX_SECONDS", d.ModelRetry, time.Second, time.Second),
		StorageTimeout: e.Duration("STORAGE_TIMEOUT_SECONDS", d.StorageTimeout, time.Second, time.Second),
		DecodeMemory:   e.Int("DECODE_MEMORY_BYTES", d.DecodeMemory, 1<<20),
		DecodeWait:     e.Duration("DECODE_WAIT_MS", d.DecodeWait, time.Millisecond, 0),
		ResultsBucket:  e.String("RESULTS_BUCKET", ""),
		UploadBucket:   e.String("UPLOAD_BUCKET", ""),
		UploadPrefixes: e.List("UPLOAD_PREFIXES"),
		ContentTypes:   e.List("UPLOAD_CONTENT_TYPES"),
		Topic:          e.String("PREDICTIONS_TOPIC", ""),
		Project:        gcp.ProjectFrom(getenv),
	}
	if c.ContentTypes == nil {
		c.ContentTypes = d.ContentTypes
	}
	switch {
	case c.ModelURI != "":
		// A fixed model. REGISTRY_URI may still be set for SubmitTraining,
		// which shares the environment when every function runs in one
		// process (./functions/cmd/functions).
	case c.RegistryURI != "" && c.ModelName == "":
		e.Failf("REGISTRY_URI is set but MODEL_NAME is not: name the registry model to serve")
	case c.RegistryURI == "":
		e.Failf("no model: set MODEL_URI (gs://bucket/prefix or file:///dir holding model.json and model.onnx) or REGISTRY_URI and MODEL_NAME (serve the production alias, reloading when it moves)")
	}
	if c.ServesRegistry() {
		if err := validRegistryURI(c.RegistryURI); err != nil {
			e.Failf("REGISTRY_URI=%q: %v", c.RegistryURI, err)
		}
	}
	if err := e.Err(); err != nil {
		return c, fmt.Errorf("configuration: %w", err)
	}
	return c, nil
}

// ServesRegistry reports whether the model comes from a registry alias
// (REGISTRY_URI and MODEL_NAME, no MODEL_URI) rather than a fixed MODEL_URI.
func (c Config) ServesRegistry() bool { return c.ModelURI == "" && c.RegistryURI != "" }

// ValidateUpload checks what PredictOnUpload needs on top of the common
// configuration. Writing results into the trigger bucket would trigger the
// function on its own output forever, so that is refused outright.
func (c Config) ValidateUpload() error {
	var errs []string
	if c.ResultsBucket == "" {
		errs = append(errs, "RESULTS_BUCKET is not set")
	} else if strings.Contains(c.ResultsBucket, "/") || strings.HasPrefix(c.ResultsBucket, "gs:") {
		errs = append(errs, fmt.Sprintf("RESULTS_BUCKET=%q: want a bucket name, not a URI", c.ResultsBucket))
	}
	if c.UploadBucket != "" && c.UploadBucket == c.ResultsBucket {
		errs = append(errs, fmt.Sprintf("RESULTS_BUCKET and UPLOAD_BUCKET are both %q: results written into the trigger bucket would trigger the function again, forever", c.ResultsBucket))
	}
	if c.Topic != "" {
		if _, err := gcp.TopicName(c.Project, c.Topic); err != nil {
			errs = append(errs, fmt.Sprintf("PREDICTIONS_TOPIC: %v", err))
		}
	}
	if len(errs) > 0 {
		return errors.New("PredictOnUpload configuration: " + strings.Join(errs, "; "))
	}
	return nil
}

// bucketAllowed fails closed: with no allow-list, no bucket may be read
// through a JSON request (the function's account can read the registry,
// which callers must not browse).
func (c Config) bucketAllowed(b string) bool {
	return slices.Contains(c.AllowedBuckets, b)
}
