// Package dataset turns a folder-per-class image tree (a local directory or
// a gs:// prefix) into a versioned manifest, a deterministic train/validation
// split, and preprocessed samples.
//
// The class of an image is its immediate sub-folder (names may contain
// spaces). When the root holds Training/ and Test/ folders (names
// configurable) that split is used as given; otherwise a seeded, stratified
// split is drawn. The manifest lists every image file with its size, sha256,
// class and split; its digest identifies the dataset version.
package dataset

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"path"
	"slices"
	"strings"
)

// Split names.
const (
	SplitTrain      = "train"
	SplitValidation = "validation"
	SplitSkipped    = "skipped" // unreadable: listed so the digest covers it, never used
)

// Entry is one image file of the dataset.
type Entry struct {
	Path   string `json:"path"` // key relative to the dataset root
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	Class  string `json:"class"`
	Split  string `json:"split"`
	Reason string `json:"reason,omitempty"` // why a skipped file was skipped
}

// Manifest is the versioned description of a dataset.
type Manifest struct {
	URI     string   `json:"uri"`
	Labels  []string `json:"labels"` // sorted; the model's output order
	Entries []Entry  `json:"entries"`
}

// imageExts are the file name extensions considered images.
var imageExts = map[string]bool{".jpg": true, ".jpeg": true, ".png": true, ".webp": true}

// IsImageKey reports whether a key names an image file by its extension and
// is not hidden.
func IsImageKey(key string) bool {
	base := path.Base(key)
	if strings.HasPrefix(base, ".") {
		return false
	}
	return imageExts[strings.ToLower(path.Ext(base))]
}

// Layout maps keys to classes and given splits.
type Layout struct {
	Folders  bool   // use the TrainDir/TestDir split
	TrainDir string // e.g. "Training"
	TestDir  string // e.g. "Test"
}

// Classify returns the class of a key and its given split ("" when the
// split is to be drawn). ok is false for keys that are not class images
// (files at the root, or outside the split folders).
func (l Layout) Classify(key string) (class, split string, ok bool) {
	parts := strings.Split(key, "/")
	if l.Folders {
		if len(parts) < 3 {
			return "", "", false
		}
		switch parts[0] {
		case l.TrainDir:
			split = SplitTrain
		case l.TestDir:
			split = SplitValidation
		default:
			return "", "", false
		}
		parts = parts[1:]
	}
	if len(parts) < 2 || parts[0] == "" || strings.HasPrefix(parts[0], ".") {
		return "", "", false
	}
	return parts[0], split, true
}

// DetectFolders reports whether keys contain both a train and a test
// folder (the "auto" split mode).
func DetectFolders(keys []string, trainDir, testDir string) bool {
	var tr, te bool
	for _, k := range keys {
		first, _, _ := strings.Cut(k, "/")
		tr = tr || first == trainDir
		te = te || first == testDir
	}
	return tr && te
}

// StratifiedSplit assigns SplitTrain or SplitValidation to every entry whose
// Split is empty, per class: entries are ordered by a hash of (seed, path),
// so the assignment does not depend on listing order and changes little when
// files are added; round(n*fraction) of each class (at least one when the
// class has two or more images) go to validation. Entries already split or
// skipped are left alone.
func StratifiedSplit(entries []Entry, fraction float64, seed int64) {
	byClass := map[string][]int{}
	for i, e := range entries {
		if e.Split == "" {
			byClass[e.Class] = append(byClass[e.Class], i)
		}
	}
	key := func(i int) uint64 {
		h := fnv.New64a()
		fmt.Fprintf(h, "%d\x00%s", seed, entries[i].Path)
		return h.Sum64()
	}
	for _, idx := range byClass {
		keys := make(map[int]uint64, len(idx))
		for _, i := range idx {
			keys[i] = key(i)
		}
		slices.SortFunc(idx, func(a, b int) int {
			if c := cmp.Compare(keys[a], keys[b]); c != 0 {
				return c
			}
			return strings.Compare(entries[a].Path, entries[b].Path)
		})
		nVal := int(math.Round(float64(len(idx)) * fraction))
		if nVal == 0 && len(idx) >= 2 {
			nVal = 1
		}
		if nVal >= len(idx) {
			nVal = len(idx) - 1
		}
		for j, i := range idx {
			if j < nVal {
				entries[i].Split = SplitValidation
			} else {
				entries[i].Split = SplitTrain
			}
		}
	}
}

// Digest is "sha256:<hex>" of the manifest's canonical form: one JSON line
// per entry (path, size, sha256, class, split) in path order, after a line
// with the labels. The URI is not part of it: the same files at another
// location are the same dataset version.
func (m *Manifest) Digest() string {
	h := sha256.New()
	h.Write(m.canonical())
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

func (m *Manifest) canonical() []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	_ = enc.Encode(m.Labels)
	es := slices.Clone(m.Entries)
	slices.SortFunc(es, func(a, b Entry) int { return strings.Compare(a.Path, b.Path) })
	for _, e := range es {
		_ = enc.Encode([]any{e.Path, e.Size, e.SHA256, e.Class, e.Split})
	}
	return b.Bytes()
}

// JSONL renders the manifest as JSON lines: a header object, then one entry
// per line, for writing next to the model.
func (m *Manifest) JSONL() []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	_ = enc.Encode(map[string]any{"uri": m.URI, "labels": m.Labels, "digest": m.Digest(), "entries": len(m.Entries)})
	for _, e := range m.Entries {
		_ = enc.Encode(e)
	}
	return b.Bytes()
}

// Counts returns the number of entries per split.
func (m *Manifest) Counts() map[string]int {
	c := map[string]int{}
	for _, e := range m.Entries {
		c[e.Split]++
	}
	return c
}
