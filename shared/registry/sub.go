package registry

import (
	"context"
	"strings"

	"github.com/orchard-mlops/orchard/shared/blob"
)

// Sub returns a view of st in which every key is under prefix (a "folder":
// "a/b/" or "a/b"). It lets model.LoadFrom and PutVersion work on one
// version of a registry held in any store.
func Sub(st blob.Store, prefix string) blob.Store {
	if prefix = strings.Trim(prefix, "/"); prefix != "" {
		prefix += "/"
	}
	return &subStore{s: st, p: prefix}
}

type subStore struct {
	s blob.Store
	p string
}

func (s *subStore) fix(a blob.Attrs) blob.Attrs {
	a.Key = strings.TrimPrefix(a.Key, s.p)
	return a
}

func (s *subStore) Read(ctx context.Context, key string, maxBytes int64) ([]byte, blob.Attrs, error) {
	b, a, err := s.s.Read(ctx, s.p+key, maxBytes)
	return b, s.fix(a), err
}

func (s *subStore) Write(ctx context.Context, key string, data []byte, opts blob.WriteOptions) (blob.Attrs, error) {
	a, err := s.s.Write(ctx, s.p+key, data, opts)
	return s.fix(a), err
}

func (s *subStore) Attributes(ctx context.Context, key string) (blob.Attrs, error) {
	a, err := s.s.Attributes(ctx, s.p+key)
	return s.fix(a), err
}

func (s *subStore) List(ctx context.Context, prefix string) ([]blob.Attrs, error) {
	as, err := s.s.List(ctx, s.p+prefix)
	for i := range as {
		as[i] = s.fix(as[i])
	}
	return as, err
}

func (s *subStore) Delete(ctx context.Context, key string) error { return s.s.Delete(ctx, s.p+key) }

func (s *subStore) URI(key string) string { return s.s.URI(s.p + key) }
