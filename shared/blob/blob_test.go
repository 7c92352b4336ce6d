package blob_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/blob/blobtest"
	"github.com/orchard-mlops/orchard/shared/emulators"
)

func TestMain(m *testing.M) { os.Exit(emulators.RunTests(m)) }

func newDir(t *testing.T) blob.Store {
	st, err := blob.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestDir(t *testing.T) {
	blobtest.Conformance(t, newDir)

	st := newDir(t)
	for _, k := range []string{"../escape", "a/../../b", "/abs", "", "a//b", ".orchard-tmp-x"} {
		if _, err := st.Write(context.Background(), k, nil, blob.WriteOptions{}); err == nil {
			t.Errorf("key %q accepted", k)
		}
	}
}

// newGCS returns a store on a fresh prefix of one emulator bucket.
func newGCS(t *testing.T) func(t *testing.T) blob.Store {
	g := emulators.GCSForTest(t)
	c := g.ClientForTest(t)
	if err := c.Bucket("conformance").Create(context.Background(), "test", nil); err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	return func(t *testing.T) blob.Store {
		return blob.NewGCS(c, "conformance", fmt.Sprintf("some/prefix-%d", n.Add(1)))
	}
}

func TestGCS(t *testing.T) { blobtest.Conformance(t, newGCS(t)) }

func TestPrefixed(t *testing.T) {
	t.Run("dir", func(t *testing.T) {
		blobtest.Conformance(t, func(t *testing.T) blob.Store { return blob.Prefixed(newDir(t), "a/b/") })
	})
	gcs := newGCS(t)
	t.Run("gcs", func(t *testing.T) {
		blobtest.Conformance(t, func(t *testing.T) blob.Store { return blob.Prefixed(gcs(t), "view") })
	})
	// Keys are relative to the view, URIs are the objects'.
	st := newDir(t)
	v := blob.Prefixed(st, "/models/m/")
	a, err := v.Write(context.Background(), "model.json", []byte("{}"), blob.WriteOptions{})
	if err != nil || a.Key != "model.json" || a.URI != st.URI("models/m/model.json") || v.URI("") != st.URI("models/m/") {
		t.Errorf("Write = %+v, %v; view URI %s", a, err, v.URI(""))
	}
}

func TestRecorder(t *testing.T) {
	blobtest.Conformance(t, func(t *testing.T) blob.Store { return blobtest.Record(newDir(t)) })
}

func TestOpener(t *testing.T) {
	ctx := context.Background()
	var none *blob.Opener
	if st, err := none.Open(ctx, t.TempDir()); err != nil || !strings.HasPrefix(st.URI(""), "file://") {
		t.Errorf("nil Opener on a local path = %v", err)
	}
	if _, err := none.Open(ctx, "gs://b/p"); err == nil {
		t.Error("nil Opener opened a gs:// URI")
	}
	if _, err := blob.NewOpener(nil).Open(ctx, "gs://b/p"); err == nil {
		t.Error("an Opener without a client opened a gs:// URI")
	}
	g := emulators.GCSForTest(t)
	g.Setenv(t)
	lazy := blob.LazyOpener()
	st, err := lazy.Open(ctx, "gs://b/p")
	if err != nil || st.URI("k") != "gs://b/p/k" {
		t.Fatalf("LazyOpener.Open = %v", err)
	}
	c1, _ := lazy.Client(ctx)
	c2, _ := lazy.Client(ctx)
	if c1 != c2 {
		t.Error("LazyOpener made two clients")
	}
	if err := lazy.Close(); err != nil {
		t.Error(err)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		in           string
		bucket, path string
		gcs, wantErr bool
	}{
		{"gs://b/p/q/", "b", "p/q/", true, false},
		{"gs://b", "b", "", true, false},
		{"gs:///x", "", "", false, true},
		{"file:///tmp/m", "", "/tmp/m", false, false},
		{"file://host/tmp", "", "", false, true},
		{"s3://b/k", "", "", false, true},
		{"", "", "", false, true},
		{"rel/dir", "", "rel/dir", false, false},
	}
	for _, tt := range tests {
		b, p, gcs, err := blob.Parse(tt.in)
		if (err != nil) != tt.wantErr || b != tt.bucket || p != tt.path || gcs != tt.gcs {
			t.Errorf("Parse(%q) = %q, %q, %v, %v", tt.in, b, p, gcs, err)
		}
	}
}
