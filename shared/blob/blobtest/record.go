// Package blobtest records the Cloud Storage permissions code needs, so
// tests can hold the IAM table (infra/terraform/storage_calls.csv) to what
// the code really does: wrap the store a component uses in a Recorder, run
// the component, then CheckTable.
package blobtest

import (
	"context"
	"encoding/csv"
	"errors"
	"iter"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/orchard-mlops/orchard/shared/blob"
)

// Call is one permission used on one object key (or list prefix).
type Call struct{ Permission, Key string }

// Recorder is a blob.Store that records the IAM permission each call needs
// on Cloud Storage: reads and attributes need get, listing needs list,
// writing needs create, and replacing an existing object needs delete too.
type Recorder struct {
	blob.Store
	mu    sync.Mutex
	calls []Call
}

// Record wraps st.
func Record(st blob.Store) *Recorder { return &Recorder{Store: st} }

func (r *Recorder) add(perm, key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, Call{perm, key})
}

// Calls returns the calls so far.
func (r *Recorder) Calls() []Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

func (r *Recorder) Read(ctx context.Context, key string, max int64) ([]byte, blob.Attrs, error) {
	r.add("storage.objects.get", key)
	return r.Store.Read(ctx, key, max)
}

func (r *Recorder) Attributes(ctx context.Context, key string) (blob.Attrs, error) {
	r.add("storage.objects.get", key)
	return r.Store.Attributes(ctx, key)
}

func (r *Recorder) ReadGeneration(ctx context.Context, key string, gen, max int64) ([]byte, blob.Attrs, error) {
	r.add("storage.objects.get", key)
	return r.Store.ReadGeneration(ctx, key, gen, max)
}

func (r *Recorder) List(ctx context.Context, opts blob.ListOptions) iter.Seq2[blob.Attrs, error] {
	r.add("storage.objects.list", opts.Prefix)
	return r.Store.List(ctx, opts)
}

func (r *Recorder) Delete(ctx context.Context, key string) error {
	r.add("storage.objects.delete", key)
	return r.Store.Delete(ctx, key)
}

// Write records create, and delete when the write replaced an object (a
// generation precondition, or an unconditional write over an existing one).
func (r *Recorder) Write(ctx context.Context, key string, data []byte, o blob.WriteOptions) (blob.Attrs, error) {
	replaces := o.IfGenerationMatch != 0
	if !o.IfNotExist && !replaces {
		_, err := r.Store.Attributes(ctx, key)
		replaces = err == nil
	}
	a, err := r.Store.Write(ctx, key, data, o)
	r.add("storage.objects.create", key)
	if replaces && err == nil {
		r.add("storage.objects.delete", key)
	}
	return a, err
}

// Row is one line of the storage-calls table.
type Row struct{ Account, Bucket, Prefix, Permission, Why string }

// ReadTable reads the table at path (account,bucket,prefix,permission,why;
// a prefix holding <model> matches any model name).
func ReadTable(tb testing.TB, path string) []Row {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil || len(recs) < 2 {
		tb.Fatalf("reading %s: %v", path, errors.Join(err, errors.New("no rows")))
	}
	var rows []Row
	for _, r := range recs[1:] {
		rows = append(rows, Row{r[0], r[1], r[2], r[3], r[4]})
	}
	return rows
}

// CheckTable fails the test for every recorded call of account on bucket
// that no row of the table covers. keyPrefix is prepended to recorded keys
// (the store's prefix inside the bucket).
func CheckTable(tb testing.TB, table, account, bucket, keyPrefix string, calls []Call) {
	tb.Helper()
	rows := ReadTable(tb, table)
	if len(calls) == 0 {
		tb.Fatalf("no storage calls recorded for %s on %s: the test exercises nothing", account, bucket)
	}
	for _, c := range calls {
		key := keyPrefix + c.Key
		ok := slices.ContainsFunc(rows, func(r Row) bool {
			return r.Account == account && r.Bucket == bucket && r.Permission == c.Permission && prefixMatches(r.Prefix, key)
		})
		if !ok {
			tb.Errorf("%s calls %s on %s/%s, which %s does not table (so IAM may not grant it)", account, c.Permission, bucket, key, table)
		}
	}
}

func prefixMatches(pattern, key string) bool {
	before, after, ok := strings.Cut(pattern, "<model>")
	if !ok {
		return strings.HasPrefix(key, pattern)
	}
	rest, ok := strings.CutPrefix(key, before)
	if !ok {
		return false
	}
	name, tail, ok := strings.Cut(rest, "/")
	return ok && name != "" && strings.HasPrefix("/"+tail, after)
}
