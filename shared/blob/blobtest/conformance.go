package blobtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/orchard-mlops/orchard/shared/blob"
)

// Conformance runs the behaviour every blob.Store must share (after
// go-cloud's drivertest), so code written against Store runs the same on
// GCS, the emulator, local directories and views of them. newStore returns
// an empty store; it is called once per subtest.
func Conformance(t *testing.T, newStore func(t *testing.T) blob.Store) {
	for _, c := range []struct {
		name string
		run  func(*testing.T, blob.Store)
	}{
		{"read missing", testMissing},
		{"write read list", testWriteReadList},
		{"read cap", testReadCap},
		{"read generation", testReadGeneration},
		{"list order and paging", testListPaging},
		{"collect limits", testCollect},
		{"if not exist", testIfNotExist},
		{"generation match", testGenerationMatch},
		{"concurrent conditional writers", testConcurrentWriters},
		{"update", testUpdate},
	} {
		t.Run(c.name, func(t *testing.T) { c.run(t, newStore(t)) })
	}
}

func testMissing(t *testing.T, st blob.Store) {
	ctx := context.Background()
	if _, _, err := st.Read(ctx, "nope/x.jpg", 0); !errors.Is(err, blob.ErrNotFound) || strings.Contains(err.Error(), "\n") {
		t.Errorf("Read = %q, want ErrNotFound on one line", err)
	}
	if _, err := st.Attributes(ctx, "nope/x.jpg"); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Attributes = %v, want ErrNotFound", err)
	}
	if err := st.Delete(ctx, "nope/x.jpg"); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Delete = %v, want ErrNotFound", err)
	}
}

func put(t *testing.T, st blob.Store, key, data string) blob.Attrs {
	t.Helper()
	a, err := st.Write(context.Background(), key, []byte(data), blob.WriteOptions{ContentType: "text/plain"})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func keys(t *testing.T, st blob.Store, opts blob.ListOptions) []string {
	t.Helper()
	var out []string
	for a, err := range st.List(context.Background(), opts) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, a.Key)
	}
	return out
}

func testWriteReadList(t *testing.T, st blob.Store) {
	ctx := context.Background()
	for _, k := range []string{"a/one.txt", "a/b/two with space.txt", "c.txt"} {
		put(t, st, k, k)
	}
	b, a, err := st.Read(ctx, "a/b/two with space.txt", 100)
	if err != nil || string(b) != "a/b/two with space.txt" || a.Size != int64(len(b)) || a.Generation == 0 {
		t.Fatalf("Read = %q, %+v, %v", b, a, err)
	}
	if a.Key != "a/b/two with space.txt" || a.URI != st.URI(a.Key) {
		t.Errorf("Read attrs name %q, %q; want the key and %q", a.Key, a.URI, st.URI(a.Key))
	}
	if diff := cmp.Diff([]string{"a/b/two with space.txt", "a/one.txt"}, keys(t, st, blob.ListOptions{Prefix: "a/"})); diff != "" {
		t.Errorf("List(a/) (-want +got):\n%s", diff)
	}
	if all := keys(t, st, blob.ListOptions{}); len(all) != 3 {
		t.Errorf("List('') = %v; want 3 objects", all)
	}
	if err := st.Delete(ctx, "c.txt"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Attributes(ctx, "c.txt"); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("after Delete: %v", err)
	}
}

func testReadCap(t *testing.T, st blob.Store) {
	ctx := context.Background()
	if _, err := st.Write(ctx, "big", make([]byte, 1000), blob.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Read(ctx, "big", 999); !errors.Is(err, blob.ErrTooLarge) {
		t.Errorf("Read over cap = %v, want ErrTooLarge", err)
	}
	if b, _, err := st.Read(ctx, "big", 1000); err != nil || len(b) != 1000 {
		t.Errorf("Read at cap = %d bytes, %v", len(b), err)
	}
}

func testReadGeneration(t *testing.T, st blob.Store) {
	ctx := context.Background()
	a1 := put(t, st, "g", "one")
	b, a, err := st.ReadGeneration(ctx, "g", a1.Generation, 10)
	if err != nil || string(b) != "one" || a.Generation != a1.Generation {
		t.Fatalf("ReadGeneration(current) = %q, %+v, %v", b, a, err)
	}
	a2 := put(t, st, "g", "two")
	if b, a, err := st.ReadGeneration(ctx, "g", 0, 10); err != nil || string(b) != "two" || a.Generation != a2.Generation {
		t.Errorf("ReadGeneration(0) = %q, %+v, %v; want the live object", b, a, err)
	}
	// A replaced generation: GCS without versioning and Dir no longer hold it.
	if b, _, err := st.ReadGeneration(ctx, "g", a1.Generation, 10); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("ReadGeneration(replaced) = %q, %v; want ErrNotFound", b, err)
	}
	if _, _, err := st.ReadGeneration(ctx, "g", a2.Generation, 2); !errors.Is(err, blob.ErrTooLarge) {
		t.Errorf("ReadGeneration over cap = %v, want ErrTooLarge", err)
	}
}

func testListPaging(t *testing.T, st blob.Store) {
	// "b.txt" sorts before "b/x" ('.' < '/'): key order, not directory order.
	want := []string{"a", "b.txt", "b/x", "b/y/z", "ba", "c"}
	for _, k := range []string{"c", "b/y/z", "a", "ba", "b/x", "b.txt"} {
		put(t, st, k, k)
	}
	if diff := cmp.Diff(want, keys(t, st, blob.ListOptions{})); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"b.txt", "b/x", "b/y/z", "ba"}, keys(t, st, blob.ListOptions{Prefix: "b"})); diff != "" {
		t.Errorf("List(b) (-want +got):\n%s", diff)
	}
	// Pages of two, each resuming after the last key of the one before.
	var paged []string
	after := ""
	for range len(want) {
		var page []string
		for a, err := range st.List(context.Background(), blob.ListOptions{StartAfter: after}) {
			if err != nil {
				t.Fatal(err)
			}
			if page = append(page, a.Key); len(page) == 2 {
				break // stopping early must be safe
			}
		}
		if len(page) == 0 {
			break
		}
		paged, after = append(paged, page...), page[len(page)-1]
	}
	if diff := cmp.Diff(want, paged); diff != "" {
		t.Errorf("paged List (-want +got):\n%s", diff)
	}
	if got := keys(t, st, blob.ListOptions{Prefix: "b/", StartAfter: "b/x"}); !cmp.Equal(got, []string{"b/y/z"}) {
		t.Errorf("List(b/, after b/x) = %v", got)
	}
}

func testCollect(t *testing.T, st blob.Store) {
	ctx := context.Background()
	for i := range 5 {
		put(t, st, fmt.Sprintf("d/%d.jpg", i), "x")
		put(t, st, fmt.Sprintf("d/%d.txt", i), "x")
	}
	jpg := func(a blob.Attrs) bool { return strings.HasSuffix(a.Key, ".jpg") }
	got, err := blob.Collect(ctx, st, blob.ListOptions{Prefix: "d/"}, blob.Limits{Keep: jpg, Max: 5, Scan: 10})
	if err != nil || len(got) != 5 {
		t.Errorf("Collect at the limits = %d objects, %v; want 5", len(got), err)
	}
	for _, lim := range []blob.Limits{{Keep: jpg, Max: 4}, {Keep: jpg, Scan: 9}} {
		if _, err := blob.Collect(ctx, st, blob.ListOptions{Prefix: "d/"}, lim); !errors.Is(err, blob.ErrTooMany) {
			t.Errorf("Collect(%+v) = %v, want ErrTooMany", lim, err)
		}
	}
}

func testIfNotExist(t *testing.T, st blob.Store) {
	ctx := context.Background()
	if _, err := st.Write(ctx, "once", []byte("1"), blob.WriteOptions{IfNotExist: true}); err != nil {
		t.Fatal(err)
	}
	_, err := st.Write(ctx, "once", []byte("2"), blob.WriteOptions{IfNotExist: true})
	if !errors.Is(err, blob.ErrPrecondition) || strings.Contains(err.Error(), "\n") {
		t.Errorf("second IfNotExist write = %q, want ErrPrecondition on one line", err)
	}
	if b, _, _ := st.Read(ctx, "once", 0); string(b) != "1" {
		t.Errorf("content = %q, want the first write", b)
	}
}

func testGenerationMatch(t *testing.T, st blob.Store) {
	ctx := context.Background()
	a1 := put(t, st, "alias", "v1")
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
}

func testConcurrentWriters(t *testing.T, st blob.Store) {
	ctx := context.Background()
	a := put(t, st, "race", "0")
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
}

// testUpdate: concurrent blob.Update increments lose no update.
func testUpdate(t *testing.T, st blob.Store) {
	ctx := context.Background()
	const n = 8
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			_, wrote, err := blob.Update(ctx, st, "counter", blob.UpdateOptions{Data: true}, func(cur *blob.Current) (*blob.Change, error) {
				v := ""
				if cur != nil {
					v = string(cur.Data)
				}
				return &blob.Change{Data: []byte(v + "+"), ContentType: "text/plain"}, nil
			})
			if err != nil || !wrote {
				t.Errorf("Update = %v, %v", wrote, err)
			}
		})
	}
	wg.Wait()
	b, _, err := st.Read(ctx, "counter", 0)
	if err != nil || string(b) != strings.Repeat("+", n) {
		t.Errorf("after %d updates: %q, %v", n, b, err)
	}
	_, wrote, err := blob.Update(ctx, st, "counter", blob.UpdateOptions{AssumeAbsent: true}, func(cur *blob.Current) (*blob.Change, error) {
		if cur == nil {
			return &blob.Change{Data: []byte("clobber")}, nil
		}
		if cur.Attrs.Generation == 0 || cur.Attrs.Size != n {
			t.Errorf("Update saw %+v, want the %d-byte counter", cur.Attrs, n)
		}
		return nil, nil // leave it
	})
	if err != nil || wrote {
		t.Errorf("leaving Update = %v, %v", wrote, err)
	}
}
