package blob_test

import (
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/emulators"
)

func TestMain(m *testing.M) { os.Exit(emulators.RunTests(m)) }

// conformance is run against every driver, so code written against Store
// behaves the same on GCS, the emulator and local directories.
func conformance(t *testing.T, st blob.Store) {
	ctx := context.Background()

	t.Run("read missing", func(t *testing.T) {
		if _, _, err := st.Read(ctx, "nope/x.jpg", 0); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("Read = %v, want ErrNotFound", err)
		}
		if _, err := st.Attributes(ctx, "nope/x.jpg"); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("Attributes = %v, want ErrNotFound", err)
		}
		if err := st.Delete(ctx, "nope/x.jpg"); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("Delete = %v, want ErrNotFound", err)
		}
	})

	t.Run("write read list", func(t *testing.T) {
		for _, k := range []string{"a/one.txt", "a/b/two with space.txt", "c.txt"} {
			if _, err := st.Write(ctx, k, []byte(k), blob.WriteOptions{ContentType: "text/plain"}); err != nil {
				t.Fatal(err)
			}
		}
		b, a, err := st.Read(ctx, "a/b/two with space.txt", 100)
		if err != nil || string(b) != "a/b/two with space.txt" || a.Size != int64(len(b)) || a.Generation == 0 {
			t.Fatalf("Read = %q, %+v, %v", b, a, err)
		}
		got, err := st.List(ctx, "a/")
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, a := range got {
			keys = append(keys, a.Key)
		}
		if diff := cmp.Diff([]string{"a/b/two with space.txt", "a/one.txt"}, keys); diff != "" {
			t.Errorf("List(a/) (-want +got):\n%s", diff)
		}
		all, err := st.List(ctx, "")
		if err != nil || len(all) != 3 {
			t.Errorf("List('') = %d objects, %v; want 3", len(all), err)
		}
		if err := st.Delete(ctx, "c.txt"); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Attributes(ctx, "c.txt"); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("after Delete: %v", err)
		}
	})

	t.Run("read cap", func(t *testing.T) {
		if _, err := st.Write(ctx, "big", make([]byte, 1000), blob.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := st.Read(ctx, "big", 999); !errors.Is(err, blob.ErrTooLarge) {
			t.Errorf("Read over cap = %v, want ErrTooLarge", err)
		}
		if b, _, err := st.Read(ctx, "big", 1000); err != nil || len(b) != 1000 {
			t.Errorf("Read at cap = %d bytes, %v", len(b), err)
		}
	})

	t.Run("if not exist", func(t *testing.T) {
		if _, err := st.Write(ctx, "once", []byte("1"), blob.WriteOptions{IfNotExist: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Write(ctx, "once", []byte("2"), blob.WriteOptions{IfNotExist: true}); !errors.Is(err, blob.ErrPrecondition) {
			t.Errorf("second IfNotExist write = %v, want ErrPrecondition", err)
		}
		if b, _, _ := st.Read(ctx, "once", 0); string(b) != "1" {
			t.Errorf("content = %q, want the first write", b)
		}
	})

	t.Run("generation match", func(t *testing.T) {
		a1, err := st.Write(ctx, "alias", []byte("v1"), blob.WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		a2, err := st.Write(ctx, "alias", []byte("v2"), blob.WriteOptions{IfGenerationMatch: a1.Generation})
		if err != nil {
			t.Fatal(err)
		}
		if a2.Generation == a1.Generation {
			t.Fatalf("generation did not change: %d", a2.Generation)
		}
		if _, err := st.Write(ctx, "alias", []byte("stale"), blob.WriteOptions{IfGenerationMatch: a1.Generation}); !errors.Is(err, blob.ErrPrecondition) {
			t.Errorf("stale write = %v, want ErrPrecondition", err)
		}
	})

	t.Run("concurrent conditional writers", func(t *testing.T) {
		a, err := st.Write(ctx, "race", []byte("0"), blob.WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var wins atomic.Int32
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				_, err := st.Write(ctx, "race", []byte("x"), blob.WriteOptions{IfGenerationMatch: a.Generation})
				switch {
				case err == nil:
					wins.Add(1)
				case !errors.Is(err, blob.ErrPrecondition):
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Errorf("%d writers won, want exactly 1", wins.Load())
		}
	})
}

func TestDir(t *testing.T) {
	st, err := blob.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	conformance(t, st)

	for _, k := range []string{"../escape", "a/../../b", "/abs", "", "a//b", ".orchard-tmp-x"} {
		if _, err := st.Write(context.Background(), k, nil, blob.WriteOptions{}); err == nil {
			t.Errorf("key %q accepted", k)
		}
	}
}

func TestGCS(t *testing.T) {
	g := emulators.GCSForTest(t)
	c := g.ClientForTest(t)
	if err := c.Bucket("conformance").Create(context.Background(), "test", nil); err != nil {
		t.Fatal(err)
	}
	conformance(t, blob.NewGCS(c, "conformance", "some/prefix"))
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
