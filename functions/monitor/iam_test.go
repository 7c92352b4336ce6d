package monitor

import (
	"testing"

	"github.com/orchard-mlops/orchard/shared/blob/blobtest"
	"github.com/orchard-mlops/orchard/shared/registry"
)

// storageCallsTable is the IAM table Terraform checks its grants against.
const storageCallsTable = "../../infra/terraform/storage_calls.csv"

// TestStorageCallsTable runs the monitor over a window of two versions,
// twice (a redelivered tick rewrites its reports), through recording
// stores, and holds storage_calls.csv's monitor rows to what was called:
// listing and reading results, writing only under monitoring/, reading the
// registry only under models/.
func TestStorageCallsTable(t *testing.T) {
	f := setup(t)
	f.put(t, "clean", "v1", 60, 0, false, 1)
	f.put(t, "dark", "v2", 60, 30, true, 2)
	results, models := blobtest.Record(f.results), blobtest.Record(f.models)
	f.runner.Results, f.runner.Registry = results, registry.New(models, registry.Options{})
	first := f.run(t)
	if len(first.Reports) != 2 {
		t.Fatalf("%d reports, want 2", len(first.Reports))
	}
	if _, err := f.runner.RunWindow(t.Context(), first.WindowStart, first.WindowEnd); err != nil {
		t.Fatal(err)
	}
	calls := results.Calls()
	replaced := false
	for _, c := range calls {
		replaced = replaced || c.Permission == "storage.objects.delete"
	}
	if !replaced {
		t.Fatalf("the re-run did not replace its reports: %v", calls)
	}
	blobtest.CheckTable(t, storageCallsTable, "monitor", "results", "", calls)
	blobtest.CheckTable(t, storageCallsTable, "monitor", "models", "", models.Calls())
}
