package blob

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// tmpPrefix marks files being written; List never shows them.
const tmpPrefix = ".orchard-tmp-"

// Dir is a Store over a local directory. Generations are file modification
// times in nanoseconds. Conditional writes are atomic within one process
// (a mutex guards check-and-rename) and IfNotExist is atomic across
// processes too (it publishes with a hard link, which fails if the name
// exists); IfGenerationMatch across processes is best effort.
type Dir struct {
	root string
	mu   sync.Mutex
}

// NewDir returns a store rooted at dir, creating the directory.
func NewDir(dir string) (*Dir, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("blob: resolving %q: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("blob: creating %s: %w", abs, err)
	}
	return &Dir{root: abs}, nil
}

// URI implements Store.
func (d *Dir) URI(key string) string { return "file://" + filepath.ToSlash(filepath.Join(d.root, key)) }

// path maps a key to a file path, refusing keys that would escape the root.
func (d *Dir) path(key string) (string, error) {
	if key == "" || strings.HasPrefix(key, "/") || strings.Contains(key, "\\") {
		return "", fmt.Errorf("blob: invalid key %q", key)
	}
	for _, part := range strings.Split(key, "/") {
		if part == "" || part == "." || part == ".." || strings.HasPrefix(part, tmpPrefix) {
			return "", fmt.Errorf("blob: invalid key %q", key)
		}
	}
	return filepath.Join(d.root, filepath.FromSlash(key)), nil
}

func (d *Dir) attrs(key string, fi fs.FileInfo) Attrs {
	return Attrs{Key: key, URI: d.URI(key), Size: fi.Size(), Generation: fi.ModTime().UnixNano(), Updated: fi.ModTime()}
}

func (d *Dir) stat(key, p string) (Attrs, error) {
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return Attrs{}, fmt.Errorf("stat %s: %w", d.URI(key), ErrNotFound)
	}
	if err != nil {
		return Attrs{}, fmt.Errorf("stat %s: %w", d.URI(key), err)
	}
	if fi.IsDir() {
		return Attrs{}, fmt.Errorf("stat %s: a directory: %w", d.URI(key), ErrNotFound)
	}
	return d.attrs(key, fi), nil
}

// Attributes implements Store.
func (d *Dir) Attributes(_ context.Context, key string) (Attrs, error) {
	p, err := d.path(key)
	if err != nil {
		return Attrs{}, err
	}
	return d.stat(key, p)
}

// Read implements Store.
func (d *Dir) Read(ctx context.Context, key string, maxBytes int64) ([]byte, Attrs, error) {
	return d.ReadGeneration(ctx, key, 0, maxBytes)
}

// ReadGeneration implements Store. The attributes come from the opened
// file, so they describe the bytes read even if a writer renames a new
// file into place meanwhile.
func (d *Dir) ReadGeneration(_ context.Context, key string, gen, maxBytes int64) ([]byte, Attrs, error) {
	p, err := d.path(key)
	if err != nil {
		return nil, Attrs{}, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, Attrs{}, fmt.Errorf("reading %s: %w", d.URI(key), ErrNotFound)
	}
	if err != nil {
		return nil, Attrs{}, fmt.Errorf("reading %s: %w", d.URI(key), err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, Attrs{}, fmt.Errorf("reading %s: %w", d.URI(key), err)
	}
	if fi.IsDir() {
		return nil, Attrs{}, fmt.Errorf("reading %s: a directory: %w", d.URI(key), ErrNotFound)
	}
	a := d.attrs(key, fi)
	if gen != 0 && a.Generation != gen {
		return nil, Attrs{}, fmt.Errorf("reading %s: generation %d is gone (now %d): %w", d.URI(key), gen, a.Generation, ErrNotFound)
	}
	b, err := ReadCapped(f, a.Size, maxBytes)
	if err != nil {
		return nil, a, fmt.Errorf("reading %s: %w", d.URI(key), err)
	}
	return b, a, nil
}

// Write implements Store.
func (d *Dir) Write(_ context.Context, key string, data []byte, opts WriteOptions) (Attrs, error) {
	p, err := d.path(key)
	if err != nil {
		return Attrs{}, err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return Attrs{}, fmt.Errorf("writing %s: %w", d.URI(key), err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), tmpPrefix+"*")
	if err != nil {
		return Attrs{}, fmt.Errorf("writing %s: %w", d.URI(key), err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return Attrs{}, fmt.Errorf("writing %s: %w", d.URI(key), err)
	}
	if err := tmp.Close(); err != nil {
		return Attrs{}, fmt.Errorf("writing %s: %w", d.URI(key), err)
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case opts.IfNotExist:
		if err := os.Link(tmp.Name(), p); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return Attrs{}, fmt.Errorf("writing %s: exists: %w", d.URI(key), ErrPrecondition)
			}
			return Attrs{}, fmt.Errorf("writing %s: %w", d.URI(key), err)
		}
		return d.stat(key, p)
	}
	cur, err := d.stat(key, p)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Attrs{}, err
	}
	if opts.IfGenerationMatch != 0 && cur.Generation != opts.IfGenerationMatch {
		return Attrs{}, fmt.Errorf("writing %s: generation %d, want %d: %w", d.URI(key), cur.Generation, opts.IfGenerationMatch, ErrPrecondition)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return Attrs{}, fmt.Errorf("writing %s: %w", d.URI(key), err)
	}
	a, err := d.stat(key, p)
	if err != nil {
		return Attrs{}, err
	}
	// File systems stamp times with a coarse clock; two quick writes could
	// share a generation and defeat IfGenerationMatch. Force it forward.
	if cur.Generation != 0 && a.Generation <= cur.Generation {
		t := time.Unix(0, cur.Generation+1)
		if err := os.Chtimes(p, t, t); err != nil {
			return Attrs{}, fmt.Errorf("writing %s: advancing generation: %w", d.URI(key), err)
		}
		return d.stat(key, p)
	}
	return a, nil
}

// List implements Store. It walks only the deepest directory the prefix
// fully names, reading one directory at a time, and sorts each directory's
// entries as their keys sort (a directory "b" as "b/", after "b.txt"), so
// the sequence is in key order as on GCS.
func (d *Dir) List(_ context.Context, opts ListOptions) iter.Seq2[Attrs, error] {
	return func(yield func(Attrs, error) bool) {
		dir := ""
		if i := strings.LastIndex(opts.Prefix, "/"); i >= 0 {
			dir = opts.Prefix[:i+1]
		}
		if err := d.walk(dir, opts, yield); err != nil && err != errStop {
			yield(Attrs{}, fmt.Errorf("listing %s: %w", d.URI(opts.Prefix), err))
		}
	}
}

// errStop ends a walk whose consumer stopped.
var errStop = errors.New("stop")

// walk yields the files under dir ("" or a key prefix ending in "/").
func (d *Dir) walk(dir string, opts ListOptions, yield func(Attrs, error) bool) error {
	entries, err := os.ReadDir(filepath.Join(d.root, filepath.FromSlash(dir)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	keyOf := func(e fs.DirEntry) string {
		if e.IsDir() {
			return dir + e.Name() + "/"
		}
		return dir + e.Name()
	}
	slices.SortFunc(entries, func(a, b fs.DirEntry) int { return strings.Compare(keyOf(a), keyOf(b)) })
	for _, e := range entries {
		key := keyOf(e)
		if strings.HasPrefix(e.Name(), tmpPrefix) || !d.selects(key, e.IsDir(), opts) {
			continue
		}
		if e.IsDir() {
			if err := d.walk(key, opts, yield); err != nil {
				return err
			}
			continue
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted meanwhile
		}
		if err != nil {
			return err
		}
		if !yield(d.attrs(key, fi), nil) {
			return errStop
		}
	}
	return nil
}

// selects reports whether a file key, or some key under a directory key,
// can match opts.
func (d *Dir) selects(key string, isDir bool, opts ListOptions) bool {
	if !isDir {
		return strings.HasPrefix(key, opts.Prefix) && key > opts.StartAfter
	}
	prefixOK := strings.HasPrefix(key, opts.Prefix) || strings.HasPrefix(opts.Prefix, key)
	// Every key under dir "a/" lies in ("a/", "a/\xff..."): skip the
	// directory when StartAfter is past all of them.
	afterOK := opts.StartAfter < key || strings.HasPrefix(opts.StartAfter, key)
	return prefixOK && afterOK
}

// Delete implements Store.
func (d *Dir) Delete(_ context.Context, key string) error {
	p, err := d.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("deleting %s: %w", d.URI(key), ErrNotFound)
		}
		return fmt.Errorf("deleting %s: %w", d.URI(key), err)
	}
	return nil
}
