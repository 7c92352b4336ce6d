package registry_test

import (
	"testing"
	"time"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/blob/blobtest"
	"github.com/orchard-mlops/orchard/shared/model/modeltest"
	"github.com/orchard-mlops/orchard/shared/modelsource"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/onnxrt/onnxrttest"
	"github.com/orchard-mlops/orchard/shared/registry"
)

const storageCallsTable = "../../infra/terraform/storage_calls.csv"

// TestStorageCallsTable records the registry's storage calls as the
// trainer's -publish step makes them (the models bucket is the registry
// root; the job's output lives under training-runs/) and as the serving
// watcher makes them, and holds infra/terraform/storage_calls.csv to them.
func TestStorageCallsTable(t *testing.T) {
	onnxrttest.Init(t)
	ctx := t.Context()
	bucket := must(blob.NewDir(t.TempDir()))

	trainer := blobtest.Record(bucket)
	reg := registry.New(trainer, registry.Options{})
	for _, o := range []modeltest.Options{{Version: "v1", Accuracy: 0.8}, {Version: "v2", Accuracy: 0.9}, {Version: "v3", Accuracy: 0.5}} {
		run := blobtest.Record(modelDir(t, o))
		if _, err := registry.PublishFrom(ctx, reg, run, registry.PublishOptions{Runtime: onnxrt.Runtime{}, Promote: true}); err != nil {
			t.Fatal(err)
		}
		blobtest.CheckTable(t, storageCallsTable, "trainer", "models", "training-runs/job-"+o.Version+"/", run.Calls())
	}
	// Re-running a job's publish (a retried job) re-records the decision.
	if _, err := reg.Promote(ctx, "colours", "v3", registry.PromoteOptions{Runtime: onnxrt.Runtime{}}); err != nil {
		t.Fatal(err)
	}
	blobtest.CheckTable(t, storageCallsTable, "trainer", "models", "", trainer.Calls())

	serving := blobtest.Record(bucket)
	w := modelsource.NewWatcher(registry.New(serving, registry.Options{}), "colours", modelsource.WatcherOptions{Interval: time.Millisecond})
	defer w.Close(ctx)
	lease, err := w.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lease.Release()
	for _, account := range []string{"predict", "predict_on_upload"} {
		blobtest.CheckTable(t, storageCallsTable, account, "models", "", serving.Calls())
	}
}
