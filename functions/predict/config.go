package predict

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

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
	Project        string   // GOOGLE_CLOUD_PROJECT (or GCP_PROJECT): the topic's project
}

// Limits are the preprocessing limits the config implies.
func (c Config) Limits() preprocess.Limits {
	return preprocess.Limits{MaxBytes: c.MaxImageBytes, MaxPixels: c.MaxImagePixels}
}

// ConfigFromEnv reads the configuration; getenv is os.Getenv in
// production. Malformed numbers are errors, never silently defaulted.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	var errs []error
	integer := func(key string, def int64, minimum int64) int64 {
		s := strings.TrimSpace(getenv(key))
		if s == "" {
			return def
		}
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < minimum {
			errs = append(errs, fmt.Errorf("%s=%q: want an integer >= %d", key, s, minimum))
			return def
		}
		return v
	}
	c := Config{
		ModelURI:       strings.TrimSpace(getenv("MODEL_URI")),
		RegistryURI:    strings.TrimSpace(getenv("REGISTRY_URI")),
		ModelName:      strings.TrimSpace(getenv("MODEL_NAME")),
		ModelAlias:     strings.TrimSpace(getenv("MODEL_ALIAS")),
		ModelPoll:      time.Duration(integer("MODEL_POLL_SECONDS", 10, 1)) * time.Second,
		IntraOpThreads: int(integer("INTRA_OP_THREADS", 1, 1)),
		TopK:           int(integer("TOP_K", DefaultTopK, 1)),
		MaxBodyBytes:   integer("MAX_BODY_BYTES", DefaultMaxBodyBytes, 1),
		MaxImageBytes:  integer("MAX_IMAGE_BYTES", preprocess.DefaultMaxBytes, 1),
		MaxImagePixels: integer("MAX_IMAGE_PIXELS", preprocess.DefaultMaxPixels, 1),
		MaxObjects:     int(integer("MAX_OBJECTS", DefaultMaxObjects, 1)),
		Workers:        int(integer("WORKERS", int64(2*runtime.GOMAXPROCS(0)), 1)),
		AllowedBuckets: list(getenv("PREDICT_ALLOWED_BUCKETS")),
		ModelRetry:     time.Duration(integer("MODEL_RETRY_MAX_SECONDS", 30, 1)) * time.Second,
		StorageTimeout: time.Duration(integer("STORAGE_TIMEOUT_SECONDS", 30, 1)) * time.Second,
		DecodeMemory:   integer("DECODE_MEMORY_BYTES", 0, 1<<20),
		DecodeWait:     time.Duration(integer("DECODE_WAIT_MS", DefaultDecodeWait.Milliseconds(), 0)) * time.Millisecond,
		ResultsBucket:  strings.TrimSpace(getenv("RESULTS_BUCKET")),
		UploadBucket:   strings.TrimSpace(getenv("UPLOAD_BUCKET")),
		UploadPrefixes: list(getenv("UPLOAD_PREFIXES")),
		ContentTypes:   list(getenv("UPLOAD_CONTENT_TYPES")),
		Topic:          strings.TrimSpace(getenv("PREDICTIONS_TOPIC")),
		Project:        strings.TrimSpace(getenv("GOOGLE_CLOUD_PROJECT")),
	}
	if c.Project == "" {
		c.Project = strings.TrimSpace(getenv("GCP_PROJECT"))
	}
	if c.ContentTypes == nil {
		c.ContentTypes = DefaultContentTypes
	}
	switch {
	case c.ModelURI != "":
		// A fixed model. REGISTRY_URI may still be set for SubmitTraining,
		// which shares the environment when every function runs in one
		// process (./functions/cmd/functions).
	case c.RegistryURI != "" && c.ModelName == "":
		errs = append(errs, errors.New("REGISTRY_URI is set but MODEL_NAME is not: name the registry model to serve"))
	case c.ModelURI == "" && c.RegistryURI == "":
		errs = append(errs, errors.New("no model: set MODEL_URI (gs://bucket/prefix or file:///dir holding model.json and model.onnx) or REGISTRY_URI and MODEL_NAME (serve the production alias, reloading when it moves)"))
	}
	if c.ServesRegistry() {
		if err := validRegistryURI(c.RegistryURI); err != nil {
			errs = append(errs, fmt.Errorf("REGISTRY_URI=%q: %w", c.RegistryURI, err))
		}
	}
	if c.ModelAlias == "" {
		c.ModelAlias = "production"
	}
	if err := errors.Join(errs...); err != nil {
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
	var errs []error
	if c.ResultsBucket == "" {
		errs = append(errs, errors.New("RESULTS_BUCKET is not set"))
	} else if strings.Contains(c.ResultsBucket, "/") || strings.HasPrefix(c.ResultsBucket, "gs:") {
		errs = append(errs, fmt.Errorf("RESULTS_BUCKET=%q: want a bucket name, not a URI", c.ResultsBucket))
	}
	if c.UploadBucket != "" && c.UploadBucket == c.ResultsBucket {
		errs = append(errs, fmt.Errorf("RESULTS_BUCKET and UPLOAD_BUCKET are both %q: results written into the trigger bucket would trigger the function again, forever", c.ResultsBucket))
	}
	if c.Topic != "" && !strings.HasPrefix(c.Topic, "projects/") && c.Project == "" {
		errs = append(errs, fmt.Errorf("PREDICTIONS_TOPIC=%q needs GOOGLE_CLOUD_PROJECT (or a full projects/P/topics/T name)", c.Topic))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("PredictOnUpload configuration: %w", err)
	}
	return nil
}

func list(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func (c Config) workers() int {
	if c.Workers > 0 {
		return c.Workers
	}
	return 2 * runtime.GOMAXPROCS(0)
}

func (c Config) topK() int {
	if c.TopK > 0 {
		return c.TopK
	}
	return DefaultTopK
}

func (c Config) maxObjects() int {
	if c.MaxObjects > 0 {
		return c.MaxObjects
	}
	return DefaultMaxObjects
}

func (c Config) maxBody() int64 {
	if c.MaxBodyBytes > 0 {
		return c.MaxBodyBytes
	}
	return DefaultMaxBodyBytes
}

// DefaultStorageTimeout bounds one storage read when Config.StorageTimeout is 0.
// The storage client retries failed reads until its context ends, so
// without a bound an outage would hold requests open indefinitely.
const DefaultStorageTimeout = 30 * time.Second

func (c Config) storageTimeout() time.Duration {
	if c.StorageTimeout > 0 {
		return c.StorageTimeout
	}
	return DefaultStorageTimeout
}

// decodeMemory is DecodeMemory, or DecodeMemoryShare of the memory limit.
func (c Config) decodeMemory() int64 {
	if c.DecodeMemory > 0 {
		return c.DecodeMemory
	}
	n, _ := memlimit.Limit()
	if n <= 0 {
		n = 2 << 30 // unknown: Cloud Run's size for these functions
	}
	return int64(float64(n) * DecodeMemoryShare)
}

func (c Config) maxImage() int64 {
	if c.MaxImageBytes > 0 {
		return c.MaxImageBytes
	}
	return preprocess.DefaultMaxBytes
}

// bucketAllowed fails closed: with no allow-list, no bucket may be read
// through a JSON request (the function's account can read the registry,
// which callers must not browse).
func (c Config) bucketAllowed(b string) bool {
	return slices.Contains(c.AllowedBuckets, b)
}
