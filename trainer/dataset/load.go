package dataset

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/preprocess"
	"github.com/orchard-mlops/orchard/shared/signals"
)

// Split modes.
const (
	ModeAuto       = "auto"
	ModeStratified = "stratified"
	ModeFolders    = "folders"
)

// Options configure Load.
type Options struct {
	URI                string       // dataset root: local path, file:// or gs://
	Storage            *blob.Opener // opens URI; nil: local paths only
	Mode               string       // ModeAuto, ModeStratified or ModeFolders
	TrainDir, TestDir  string
	ValidationFraction float64
	Seed               int64
	Spec               preprocess.Spec
	Limits             preprocess.Limits
	// KeepRaw keeps each sample's Raw picture, for an augmenter that
	// works on the photo (config augment.source: photo); a canonical
	// spec's samples always keep it.
	KeepRaw bool
	Workers int // 0: GOMAXPROCS
	Logger  *slog.Logger
}

// Sample is one usable image.
type Sample struct {
	Path  string
	Class int
	// Canvas is the serving path's fitted square image (Spec.Canvas):
	// the base of training augmentation unless the spec is canonical.
	Canvas *image.RGBA
	// Raw is the photo as Fit receives it (Spec.Raw), what an augmenter
	// working on the photo transforms; nil unless Options.KeepRaw or the
	// spec is canonical.
	Raw *image.RGBA
	// Tensor is Spec.Tensor(Canvas), i.e. exactly what Spec.Process gives
	// the serving functions for the same bytes.
	Tensor []float32
	// Stats are the input statistics serving computes for the same bytes
	// (Spec.TensorStats): the validation set's make the drift baseline.
	Stats signals.Stats
}

// Dataset is a loaded, split, preprocessed dataset.
type Dataset struct {
	Manifest   *Manifest
	Labels     []string
	Spec       preprocess.Spec
	Train      []Sample
	Validation []Sample
	Skipped    []Entry
}

// Load lists the dataset, reads, hashes, decodes and preprocesses every
// image once, in parallel, and splits it. Unreadable images are skipped,
// counted and logged; they never abort the load. It fails only when the
// listing fails or fewer than two classes remain.
func Load(ctx context.Context, opt Options) (*Dataset, error) {
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	store, entries, layout, err := Scan(ctx, opt.Storage, opt.URI, opt.Mode, opt.TrainDir, opt.TestDir)
	if err != nil {
		return nil, err
	}

	workers := opt.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	canvases := make([]*image.RGBA, len(entries))
	raws := make([]*image.RGBA, len(entries))
	sources := make([]preprocess.Source, len(entries))
	maxBytes := opt.Limits.MaxBytes
	if maxBytes <= 0 {
		maxBytes = preprocess.DefaultMaxBytes
	}
	start := time.Now()
	var next, done atomic.Int64
	keepRaw := opt.KeepRaw || opt.Spec.Canonical()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(entries) || ctx.Err() != nil {
					return
				}
				e := &entries[i]
				b, attrs, err := store.Read(ctx, e.Path, maxBytes)
				if err != nil {
					e.Split, e.Reason = SplitSkipped, err.Error()
					if errors.Is(err, blob.ErrTooLarge) {
						e.Size = attrs.Size
					}
					continue
				}
				sum := sha256.Sum256(b)
				e.Size, e.SHA256 = int64(len(b)), hex.EncodeToString(sum[:])
				// Spec.Canvas is the serving path (Spec.Process) up to the
				// tensor: same decoding at the same scale, same Fit. The
				// Raw picture is kept when the augmenter needs it.
				var c, raw *image.RGBA
				var src preprocess.Source
				if keepRaw {
					c, raw, src, err = opt.Spec.CanvasRaw(b, opt.Limits)
				} else {
					c, src, err = opt.Spec.CanvasSource(b, opt.Limits)
				}
				if err != nil {
					e.Split, e.Reason = SplitSkipped, err.Error()
					continue
				}
				canvases[i], raws[i], sources[i] = c, raw, src
				if n := done.Add(1); n%1000 == 0 {
					log.Debug("decoded", "images", n, "of", len(entries))
				}
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	// Labels: classes with at least one usable image.
	classSet := map[string]bool{}
	for _, e := range entries {
		if e.Split != SplitSkipped {
			classSet[e.Class] = true
		}
	}
	labels := make([]string, 0, len(classSet))
	for c := range classSet {
		labels = append(labels, c)
	}
	slices.Sort(labels)
	if len(labels) < 2 {
		return nil, fmt.Errorf("dataset: %d usable classes under %s; need at least 2", len(labels), opt.URI)
	}
	classIdx := make(map[string]int, len(labels))
	for i, l := range labels {
		classIdx[l] = i
	}
	if !layout.Folders {
		StratifiedSplit(entries, opt.ValidationFraction, opt.Seed)
	}

	ds := &Dataset{
		Manifest: &Manifest{URI: store.URI(""), Labels: labels, Entries: entries},
		Labels:   labels,
		Spec:     opt.Spec,
	}
	for i, e := range entries {
		if e.Split == SplitSkipped {
			ds.Skipped = append(ds.Skipped, e)
			log.Warn("skipped unreadable image", "path", e.Path, "reason", e.Reason)
			continue
		}
		s := Sample{Path: e.Path, Class: classIdx[e.Class], Canvas: canvases[i], Raw: raws[i], Tensor: make([]float32, opt.Spec.TensorLen())}
		var err error
		if s.Stats, err = opt.Spec.TensorStats(s.Canvas, sources[i], s.Tensor); err != nil {
			return nil, fmt.Errorf("dataset: %s: %w", e.Path, err)
		}
		if e.Split == SplitValidation {
			ds.Validation = append(ds.Validation, s)
		} else {
			ds.Train = append(ds.Train, s)
		}
	}
	if len(ds.Train) == 0 || len(ds.Validation) == 0 {
		return nil, fmt.Errorf("dataset: %d training and %d validation images; need both", len(ds.Train), len(ds.Validation))
	}
	log.Info("dataset loaded", "uri", ds.Manifest.URI, "classes", len(labels), "train", len(ds.Train),
		"validation", len(ds.Validation), "skipped", len(ds.Skipped), "folders_split", layout.Folders,
		"digest", ds.Manifest.Digest(), "seconds", time.Since(start).Seconds())
	return ds, nil
}

// Scan lists the image files of a folder-per-class dataset and classifies
// them by folder (and given split, in folders mode), without reading them.
func Scan(ctx context.Context, op *blob.Opener, uri, mode, trainDir, testDir string) (blob.Store, []Entry, Layout, error) {
	if _, p, isGCS, err := blob.Parse(uri); err != nil {
		return nil, nil, Layout{}, fmt.Errorf("dataset: %w", err)
	} else if !isGCS {
		// Opener.Open creates missing directories; a dataset must exist.
		if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
			return nil, nil, Layout{}, fmt.Errorf("dataset: %s is not a directory", uri)
		}
	}
	store, err := op.Open(ctx, uri)
	if err != nil {
		return nil, nil, Layout{}, fmt.Errorf("dataset: %w", err)
	}
	objs, err := blob.Collect(ctx, store, blob.ListOptions{}, blob.Limits{})
	if err != nil {
		return nil, nil, Layout{}, fmt.Errorf("dataset: %w", err)
	}
	keys := make([]string, 0, len(objs))
	for _, o := range objs {
		if IsImageKey(o.Key) {
			keys = append(keys, o.Key)
		}
	}
	sort.Strings(keys)
	layout := Layout{TrainDir: trainDir, TestDir: testDir}
	switch mode {
	case ModeFolders:
		layout.Folders = true
		if !DetectFolders(keys, trainDir, testDir) {
			return nil, nil, Layout{}, fmt.Errorf("dataset: split mode folders needs %s/ and %s/ under %s", trainDir, testDir, uri)
		}
	case ModeAuto, "":
		layout.Folders = DetectFolders(keys, trainDir, testDir)
	case ModeStratified:
	default:
		return nil, nil, Layout{}, fmt.Errorf("dataset: unknown split mode %q", mode)
	}

	entries := make([]Entry, 0, len(keys))
	for _, k := range keys {
		class, split, ok := layout.Classify(k)
		if ok {
			entries = append(entries, Entry{Path: k, Class: class, Split: split})
		}
	}
	if len(entries) == 0 {
		return nil, nil, Layout{}, fmt.Errorf("dataset: no images in class folders under %s", uri)
	}

	return store, entries, layout, nil
}
