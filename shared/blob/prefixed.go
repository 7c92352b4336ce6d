package blob

import (
	"context"
	"iter"
	"strings"
)

// Prefixed returns a view of st in which every key is under prefix (a
// "folder": "a/b/" or "a/b"). It lets model.LoadFrom and the registry work
// on one version of a registry held in any store. Attrs keep the full URI;
// their Key is relative to the view.
func Prefixed(st Store, prefix string) Store {
	if prefix = strings.Trim(prefix, "/"); prefix != "" {
		prefix += "/"
	}
	return &prefixed{s: st, p: prefix}
}

type prefixed struct {
	s Store
	p string
}

func (s *prefixed) fix(a Attrs) Attrs {
	a.Key = strings.TrimPrefix(a.Key, s.p)
	return a
}

func (s *prefixed) Read(ctx context.Context, key string, maxBytes int64) ([]byte, Attrs, error) {
	b, a, err := s.s.Read(ctx, s.p+key, maxBytes)
	return b, s.fix(a), err
}

func (s *prefixed) ReadGeneration(ctx context.Context, key string, gen, maxBytes int64) ([]byte, Attrs, error) {
	b, a, err := s.s.ReadGeneration(ctx, s.p+key, gen, maxBytes)
	return b, s.fix(a), err
}

func (s *prefixed) Write(ctx context.Context, key string, data []byte, opts WriteOptions) (Attrs, error) {
	a, err := s.s.Write(ctx, s.p+key, data, opts)
	return s.fix(a), err
}

func (s *prefixed) Attributes(ctx context.Context, key string) (Attrs, error) {
	a, err := s.s.Attributes(ctx, s.p+key)
	return s.fix(a), err
}

func (s *prefixed) List(ctx context.Context, opts ListOptions) iter.Seq2[Attrs, error] {
	opts.Prefix = s.p + opts.Prefix
	if opts.StartAfter != "" {
		opts.StartAfter = s.p + opts.StartAfter
	}
	return func(yield func(Attrs, error) bool) {
		for a, err := range s.s.List(ctx, opts) {
			if !yield(s.fix(a), err) {
				return
			}
		}
	}
}

func (s *prefixed) Delete(ctx context.Context, key string) error { return s.s.Delete(ctx, s.p+key) }

func (s *prefixed) URI(key string) string { return s.s.URI(s.p + key) }
