// Package registry is Orchard's model registry: immutable model versions,
// movable aliases and a quality gate, stored on a blob.Store so that it runs
// the same on Cloud Storage, fake-gcs-server and a local directory.
//
// # Layout
//
//	models/<name>/versions/<version>/model.onnx, model.json, report files...
//	models/<name>/aliases/<alias>.json      which version an alias names, who moved it, when, why, history
//	models/<name>/decisions/<version>.json  the quality gate's last decision on a version
//
// Versions are immutable: every file is written with a does-not-exist
// precondition; publishing identical content again is a no-op and different
// content is an error (ErrVersionConflict). model.json is written last, so a
// version whose model.json exists is complete.
//
// Every alias move is a compare-and-swap on the alias object's generation
// (IfGenerationMatch, or IfNotExist for the first move), retried after
// re-reading on conflict, so concurrent promotions and rollbacks never lose
// an update. The alias object keeps a bounded history of earlier targets,
// which rollback uses.
//
// # Quality gate
//
// Promote moves "production" to a version only if the gate accepts it (see
// Gate): ORT-measured validation accuracy at least the current production's
// minus a margin, the same input spec and preprocessing, and the same label
// set unless a new label set is intended. Every decision, accepted or not, is
// recorded under decisions/.
//
// # Hot reload
//
// Watcher serves the classifier an alias names and swaps it when the alias
// moves (see watcher.go).
package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/errlist"
	"github.com/orchard-mlops/orchard/shared/model"
)

// Production is the alias the prediction functions serve.
const Production = "production"

// MaxHistory bounds the history kept in an alias object.
const MaxHistory = 100

// maxFileBytes caps files copied into a version.
const maxFileBytes = model.MaxONNXBytes

// Errors; test with errors.Is.
var (
	// ErrNotFound: no such model, version or alias.
	ErrNotFound = errors.New("registry: not found")
	// ErrVersionConflict: the version exists with different content.
	ErrVersionConflict = errors.New("registry: version exists with different content")
	// ErrConflict: an alias moved concurrently and the caller asked not to retry,
	// or retries ran out.
	ErrConflict = errors.New("registry: concurrent alias update")
	// ErrInvalid: a malformed name, version or alias.
	ErrInvalid = errors.New("registry: invalid argument")
)

var (
	nameRE    = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)
	versionRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
)

// ValidName checks a model or alias name: lowercase letters, digits and
// hyphens, starting with a letter, at most 63 characters.
func ValidName(s string) error {
	if !nameRE.MatchString(s) {
		return fmt.Errorf("%w: name %q must match %s", ErrInvalid, s, nameRE)
	}
	return nil
}

// ValidVersion checks a version string.
func ValidVersion(s string) error {
	if !versionRE.MatchString(s) {
		return fmt.Errorf("%w: version %q must match %s", ErrInvalid, s, versionRE)
	}
	return nil
}

// Options configure a Registry.
type Options struct {
	// Notifier, if set, is told about new versions and alias moves (e.g. a
	// model-published Pub/Sub topic). Failures are logged, never fatal: the
	// alias objects are the source of truth and watchers poll them.
	Notifier Notifier
	Logger   *slog.Logger
	Now      func() time.Time
	// Storage opens Open's URI and the model directories Publish copies
	// from; nil: local paths only.
	Storage *blob.Opener
}

// Registry is a model registry over a blob store.
type Registry struct {
	store    blob.Store
	opener   *blob.Opener
	notifier Notifier
	log      *slog.Logger
	now      func() time.Time
}

// New returns a registry rooted at st.
func New(st blob.Store, o Options) *Registry {
	r := &Registry{store: st, opener: o.Storage, notifier: o.Notifier, log: o.Logger, now: o.Now}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.now == nil {
		r.now = time.Now
	}
	return r
}

// Open returns a registry at a URI: gs://bucket[/prefix], file:///dir or a
// local path, opened by o.Storage.
func Open(ctx context.Context, uri string, o Options) (*Registry, error) {
	st, err := o.Storage.Open(ctx, uri)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	return New(st, o), nil
}

// Store returns the underlying store.
func (r *Registry) Store() blob.Store { return r.store }

// URI returns the registry's root URI.
func (r *Registry) URI() string { return r.store.URI("") }

// Keys.
func modelPrefix(name string) string { return "models/" + name + "/" }
func versionPrefix(name, version string) string {
	return modelPrefix(name) + "versions/" + version + "/"
}
func aliasKey(name, alias string) string { return modelPrefix(name) + "aliases/" + alias + ".json" }
func decisionKey(name, version string) string {
	return modelPrefix(name) + "decisions/" + version + ".json"
}

// VersionStore is a version's files, as a store rooted at the version.
func (r *Registry) VersionStore(name, version string) blob.Store {
	return blob.Prefixed(r.store, versionPrefix(name, version))
}

// VersionURI is where a version's files live.
func (r *Registry) VersionURI(name, version string) string {
	return r.store.URI(versionPrefix(name, version))
}

// AliasChange is one earlier state of an alias.
type AliasChange struct {
	Version string    `json:"version"`
	By      string    `json:"by,omitempty"`
	At      time.Time `json:"at"`
	Reason  string    `json:"reason,omitempty"`
	Action  string    `json:"action,omitempty"` // promote, rollback, set
}

// Alias is the content of aliases/<alias>.json.
type Alias struct {
	Model string `json:"model"`
	Alias string `json:"alias"`
	AliasChange
	// History holds earlier states, most recent first, at most MaxHistory.
	History []AliasChange `json:"history,omitempty"`

	// Generation is the alias object's generation when read (not stored).
	Generation int64 `json:"-"`
}

// Alias actions recorded in AliasChange.Action.
const (
	ActionPromote  = "promote"
	ActionRollback = "rollback"
	ActionSet      = "set"
)

// Alias reads an alias. A missing alias is ErrNotFound.
func (r *Registry) Alias(ctx context.Context, name, alias string) (*Alias, error) {
	if err := errlist.Join(ValidName(name), ValidName(alias)); err != nil {
		return nil, err
	}
	b, attrs, err := r.store.Read(ctx, aliasKey(name, alias), maxAliasBytes)
	if err != nil {
		if errors.Is(err, blob.ErrNotFound) {
			return nil, fmt.Errorf("alias %s of model %s: %w", alias, name, ErrNotFound)
		}
		return nil, fmt.Errorf("registry: reading alias %s/%s: %w", name, alias, err)
	}
	return parseAlias(name, alias, b, attrs.Generation)
}

// maxAliasBytes caps an alias object (MaxHistory entries fit many times).
const maxAliasBytes = 1 << 20

func parseAlias(name, alias string, b []byte, gen int64) (*Alias, error) {
	var a Alias
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("registry: parsing alias %s/%s: %w", name, alias, err)
	}
	a.Generation = gen
	return &a, nil
}

// Aliases returns every alias of a model, by alias name.
func (r *Registry) Aliases(ctx context.Context, name string) (map[string]*Alias, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	objs, err := blob.Collect(ctx, r.store, blob.ListOptions{Prefix: modelPrefix(name) + "aliases/"}, blob.Limits{})
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	out := map[string]*Alias{}
	for _, o := range objs {
		an, ok := strings.CutSuffix(path.Base(o.Key), ".json")
		if !ok || ValidName(an) != nil {
			continue
		}
		a, err := r.Alias(ctx, name, an)
		if errors.Is(err, ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		out[an] = a
	}
	return out, nil
}

// MoveOptions describe an alias move.
type MoveOptions struct {
	By     string
	Reason string
	// IfGeneration, when non-zero, moves the alias only if it is still at
	// that generation (-1: only if it does not exist yet); otherwise the move
	// fails with ErrConflict instead of being retried.
	IfGeneration int64
}

// SetAlias points an alias at an existing version, without the quality gate.
func (r *Registry) SetAlias(ctx context.Context, name, alias, version string, o MoveOptions) (*Alias, error) {
	if err := ValidVersion(version); err != nil {
		return nil, err
	}
	if _, err := r.Metadata(ctx, name, version); err != nil {
		return nil, err
	}
	a, err := r.moveAlias(ctx, name, alias, o.IfGeneration, func(cur *Alias) (string, string, error) {
		return version, ActionSet, nil
	}, o)
	if err != nil {
		return nil, err
	}
	r.notify(ctx, Event{Type: EventAliasMoved, Model: name, Version: a.Version, Alias: alias, URI: r.VersionURI(name, a.Version), Reason: o.Reason})
	return a, nil
}

// moveAlias runs a compare-and-swap loop: read the alias, let decide pick
// the new version given the current state (nil if none), write with a
// generation precondition, and start over on conflict. decide returning an
// empty version means "leave it" and ends the loop with the current alias.
func (r *Registry) moveAlias(ctx context.Context, name, alias string, ifGen int64,
	decide func(cur *Alias) (version, action string, err error), o MoveOptions) (*Alias, error) {
	return r.moveAliasReason(ctx, name, alias, ifGen, func(cur *Alias) (string, string, string, error) {
		v, a, err := decide(cur)
		return v, a, o.Reason, err
	}, o.By)
}

// moveAliasReason is moveAlias where decide also gives the reason recorded.
// The read-decide-write rounds are blob.Update's.
func (r *Registry) moveAliasReason(ctx context.Context, name, alias string, ifGen int64,
	decide func(cur *Alias) (version, action, reason string, err error), by string) (*Alias, error) {
	if err := errlist.Join(ValidName(name), ValidName(alias)); err != nil {
		return nil, err
	}
	var cur, next *Alias
	var decided error // an error of this package's, not of storage
	attrs, wrote, err := blob.Update(ctx, r.store, aliasKey(name, alias), blob.UpdateOptions{Data: true, MaxBytes: maxAliasBytes},
		func(c *blob.Current) (*blob.Change, error) {
			var ch *blob.Change
			cur, next, ch, decided = r.nextAlias(name, alias, ifGen, c, decide, by)
			return ch, decided
		})
	switch {
	case decided != nil:
		return nil, decided
	case errors.Is(err, blob.ErrPrecondition):
		return nil, fmt.Errorf("alias %s/%s: %w: %w", name, alias, ErrConflict, err)
	case err != nil:
		return nil, fmt.Errorf("registry: moving alias %s/%s: %w", name, alias, err)
	case !wrote:
		return cur, nil
	}
	next.Generation = attrs.Generation
	from := ""
	if cur != nil {
		from = cur.Version
	}
	r.log.InfoContext(ctx, "alias moved", "model", name, "alias", alias, "from", from, "to", next.Version,
		"action", next.Action, "by", by, "reason", next.Reason, "generation", attrs.Generation)
	return next, nil
}

// nextAlias is one round of an alias move: parse what is stored (c nil:
// no alias yet), check the expected generation, let decide pick the
// version, and encode the new alias object (ch nil: leave it).
func (r *Registry) nextAlias(name, alias string, ifGen int64, c *blob.Current,
	decide func(cur *Alias) (version, action, reason string, err error), by string) (cur, next *Alias, ch *blob.Change, err error) {
	have := int64(-1)
	if c != nil {
		if cur, err = parseAlias(name, alias, c.Data, c.Attrs.Generation); err != nil {
			return nil, nil, nil, err
		}
		have = cur.Generation
	}
	if ifGen != 0 && have != ifGen {
		return cur, nil, nil, fmt.Errorf("alias %s/%s is at generation %d, not %d: %w", name, alias, have, ifGen, ErrConflict)
	}
	version, action, reason, err := decide(cur)
	if err != nil || version == "" {
		return cur, nil, nil, err
	}
	next = &Alias{Model: name, Alias: alias, AliasChange: AliasChange{
		Version: version, By: by, At: r.now().UTC(), Reason: reason, Action: action,
	}}
	if cur != nil {
		next.History = append([]AliasChange{cur.AliasChange}, cur.History...)
		if len(next.History) > MaxHistory {
			next.History = next.History[:MaxHistory]
		}
	}
	b, err := json.MarshalIndent(next, "", "  ")
	if err != nil {
		return cur, nil, nil, err
	}
	return cur, next, &blob.Change{Data: append(b, '\n'), ContentType: "application/json"}, nil
}

// Metadata reads a version's model.json. A missing (or incomplete) version
// is ErrNotFound.
func (r *Registry) Metadata(ctx context.Context, name, version string) (*model.Metadata, error) {
	if err := errlist.Join(ValidName(name), ValidVersion(version)); err != nil {
		return nil, err
	}
	b, _, err := r.store.Read(ctx, versionPrefix(name, version)+model.MetadataFile, model.MaxMetadataBytes)
	if err != nil {
		if errors.Is(err, blob.ErrNotFound) {
			return nil, fmt.Errorf("version %s of model %s: %w", version, name, ErrNotFound)
		}
		return nil, fmt.Errorf("registry: %w", err)
	}
	m, err := model.ParseMetadata(b)
	if err != nil {
		return nil, fmt.Errorf("registry: version %s/%s: %w", name, version, err)
	}
	return m, nil
}

// LoadModel reads a version's model (graph and metadata).
func (r *Registry) LoadModel(ctx context.Context, name, version string) (*model.Model, error) {
	if err := errlist.Join(ValidName(name), ValidVersion(version)); err != nil {
		return nil, err
	}
	m, err := model.LoadFrom(ctx, r.VersionStore(name, version))
	if err != nil {
		if errors.Is(err, blob.ErrNotFound) {
			return nil, fmt.Errorf("version %s of model %s: %w: %w", version, name, ErrNotFound, err)
		}
		return nil, err
	}
	return m, nil
}

// PutResult describes PutVersion's outcome.
type PutResult struct {
	URI     string
	Files   []string
	Created bool // false: the identical version was already there
}

// PutVersion copies a model directory (model.onnx, model.json and any other
// files such as the training report; checkpoints/ is left out) into
// versions/<version>/. Each file is written only if absent; a file that
// exists with identical bytes is accepted, with different bytes the call
// fails with ErrVersionConflict. model.json goes last.
func (r *Registry) PutVersion(ctx context.Context, name, version string, src blob.Store) (*PutResult, error) {
	if err := errlist.Join(ValidName(name), ValidVersion(version)); err != nil {
		return nil, err
	}
	objs, err := blob.Collect(ctx, src, blob.ListOptions{}, blob.Limits{})
	if err != nil {
		return nil, fmt.Errorf("registry: listing %s: %w", src.URI(""), err)
	}
	var keys []string
	haveONNX, haveMeta := false, false
	for _, o := range objs {
		switch {
		case strings.HasPrefix(o.Key, "checkpoints/"):
			continue
		case o.Key == model.ONNXFile:
			haveONNX = true
		case o.Key == model.MetadataFile:
			haveMeta = true
		default:
			keys = append(keys, o.Key)
		}
	}
	if !haveONNX || !haveMeta {
		return nil, fmt.Errorf("%w: %s lacks %s or %s", ErrInvalid, src.URI(""), model.ONNXFile, model.MetadataFile)
	}
	sort.Strings(keys)
	keys = append(keys, model.ONNXFile, model.MetadataFile)
	dst := r.VersionStore(name, version)
	res := &PutResult{URI: dst.URI(""), Files: keys}
	for _, k := range keys {
		data, attrs, err := src.Read(ctx, k, maxFileBytes)
		if err != nil {
			return nil, fmt.Errorf("registry: %w", err)
		}
		created, err := putImmutable(ctx, dst, k, data, attrs.ContentType)
		if err != nil {
			return nil, err
		}
		res.Created = res.Created || created
	}
	if res.Created {
		r.log.InfoContext(ctx, "version stored", "model", name, "version", version, "uri", res.URI, "files", len(keys))
	}
	return res, nil
}

// putImmutable writes key if absent; an identical existing object is fine.
func putImmutable(ctx context.Context, st blob.Store, key string, data []byte, ct string) (bool, error) {
	_, created, err := blob.Update(ctx, st, key, blob.UpdateOptions{AssumeAbsent: true, Data: true, MaxBytes: maxFileBytes},
		func(cur *blob.Current) (*blob.Change, error) {
			if cur == nil {
				return &blob.Change{Data: data, ContentType: ct}, nil
			}
			if !bytes.Equal(cur.Data, data) {
				return nil, fmt.Errorf("%s differs from the stored file: %w", st.URI(key), ErrVersionConflict)
			}
			return nil, nil
		})
	if err != nil && !errors.Is(err, ErrVersionConflict) {
		return false, fmt.Errorf("registry: %w", err)
	}
	return created, err
}

// VersionInfo describes a stored version.
type VersionInfo struct {
	Model    string         `json:"model"`
	Version  string         `json:"version"`
	URI      string         `json:"uri"`
	Stored   time.Time      `json:"stored"` // when model.json was written
	Metadata model.Metadata `json:"metadata"`
	Aliases  []string       `json:"aliases"`            // aliases naming it now
	Decision *Decision      `json:"decision,omitempty"` // the gate's last decision, if any
}

// Versions lists a model's complete versions with their metadata, oldest
// first (by model creation time, then storage time, then version).
func (r *Registry) Versions(ctx context.Context, name string) ([]VersionInfo, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	prefix := modelPrefix(name) + "versions/"
	objs, err := blob.Collect(ctx, r.store, blob.ListOptions{Prefix: prefix}, blob.Limits{})
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	aliases, err := r.Aliases(ctx, name)
	if err != nil {
		return nil, err
	}
	byVersion := map[string][]string{}
	for an, a := range aliases {
		byVersion[a.Version] = append(byVersion[a.Version], an)
	}
	var out []VersionInfo
	for _, o := range objs {
		rest := strings.TrimPrefix(o.Key, prefix)
		v, file, ok := strings.Cut(rest, "/")
		if !ok || file != model.MetadataFile {
			continue
		}
		meta, err := r.Metadata(ctx, name, v)
		if err != nil {
			return nil, err
		}
		d, err := r.Decision(ctx, name, v)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		as := byVersion[v]
		sort.Strings(as)
		out = append(out, VersionInfo{Model: name, Version: v, URI: r.VersionURI(name, v), Stored: o.Updated,
			Metadata: *meta, Aliases: as, Decision: d})
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if !a.Metadata.CreatedAt.Equal(b.Metadata.CreatedAt) {
			return a.Metadata.CreatedAt.Before(b.Metadata.CreatedAt)
		}
		if !a.Stored.Equal(b.Stored) {
			return a.Stored.Before(b.Stored)
		}
		return a.Version < b.Version
	})
	return out, nil
}

// Models lists the model names in the registry.
func (r *Registry) Models(ctx context.Context) ([]string, error) {
	objs, err := blob.Collect(ctx, r.store, blob.ListOptions{Prefix: "models/"}, blob.Limits{})
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	var out []string
	for _, o := range objs {
		n, _, _ := strings.Cut(strings.TrimPrefix(o.Key, "models/"), "/")
		if ValidName(n) == nil && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}
