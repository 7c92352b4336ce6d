package task

import (
	"context"
	"strings"
	"testing"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/blob/blobtest"
	"github.com/orchard-mlops/orchard/shared/model/modeltest"
)

const storageCallsTable = "../../../infra/terraform/storage_calls.csv"

// recordedSource opens the source bucket as one recording store: the
// listings and the reads of every run.
type recordedSource struct{ *blobtest.Recorder }

func (r recordedSource) Open(context.Context, string) (blob.Store, error) { return r.Recorder, nil }

// TestStorageCallsTable runs a batch run, a re-run, and a run after an
// object was overwritten (a new generation replaces its result) through
// recording stores, and holds storage_calls.csv's batch rows to them.
func TestStorageCallsTable(t *testing.T) {
	e := newEnv(t, "results")
	e.putColours(t, "photos/", 3)
	e.put(t, "src", "photos/red/broken.jpg", "image/jpeg", []byte("not a JPEG"))
	res := blobtest.Record(blob.NewGCS(e.client, "results", ""))
	src := recordedSource{blobtest.Record(blob.NewGCS(e.client, "src", ""))}
	run := func(exec string) {
		for i := range 2 {
			r := e.runner(exec, i, 2, 0, res)
			r.Storage = src
			if _, err := r.Run(t.Context()); err != nil {
				t.Fatalf("%s task %d: %v", exec, i, err)
			}
		}
	}
	run("first")
	run("again")
	e.put(t, "src", "photos/red/000.jpg", "image/jpeg", modeltest.JPEG(t, modeltest.Solid(modeltest.Blue, 16, 16)))
	run("after-overwrite")
	calls := res.Calls()
	replaced := false
	for _, c := range calls {
		replaced = replaced || (c.Permission == "storage.objects.delete" && c.Key == "photos/red/000.jpg.json")
	}
	if !replaced {
		t.Fatalf("the overwritten object's result was not replaced: %v", calls)
	}
	blobtest.CheckTable(t, storageCallsTable, "batch", "results", "", calls)
	// Source reads are below the run's prefix, which the table writes
	// <batch-source> (Terraform expands it to batch.source_prefixes, each a
	// prefix a run may name). The uploads and datasets rows are the same;
	// src stands for either.
	var below []blobtest.Call
	for _, c := range src.Calls() {
		rest, ok := strings.CutPrefix(c.Key, "photos/")
		if !ok {
			t.Fatalf("%s %s, outside the run's prefix", c.Permission, c.Key)
		}
		below = append(below, blobtest.Call{Permission: c.Permission, Key: rest})
	}
	blobtest.CheckTable(t, storageCallsTable, "batch", "uploads", "<batch-source>", below)
}
