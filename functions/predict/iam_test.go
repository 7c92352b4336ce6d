package predict

import (
	"testing"

	"github.com/orchard-mlops/orchard/shared/blob/blobtest"
)

// storageCallsTable is the IAM table Terraform checks its grants against.
const storageCallsTable = "../../infra/terraform/storage_calls.csv"

// TestStorageCallsTable runs PredictOnUpload's result writes (a first
// upload, a duplicate delivery, a re-upload of the same name) through a
// recording store and holds the table's predict_on_upload/results rows to
// what was called: replacing a result needs storage.objects.delete.
func TestStorageCallsTable(t *testing.T) {
	e := newUploadEnv(t, testConfig())
	rec := blobtest.Record(e.u.Results.Store)
	e.u.Results.Store = rec
	img := redJPEG(t)
	gen := e.put(t, "uploads", "a.jpg", "image/jpeg", img)
	for _, id := range []string{"ev-1", "ev-1-again"} {
		if code := e.send(t, finalizeRequest(id, "uploads", "a.jpg", gen, int64(len(img)), "image/jpeg", nil)); !acked(code) {
			t.Fatalf("HTTP %d", code)
		}
	}
	blue := bluePNG(t)
	gen2 := e.put(t, "uploads", "a.jpg", "image/png", blue)
	if code := e.send(t, finalizeRequest("ev-2", "uploads", "a.jpg", gen2, int64(len(blue)), "image/png", nil)); !acked(code) {
		t.Fatalf("HTTP %d", code)
	}
	calls := rec.Calls()
	replaced := false
	for _, c := range calls {
		replaced = replaced || c.Permission == "storage.objects.delete"
	}
	if !replaced {
		t.Fatalf("the re-upload did not replace its result: %v", calls)
	}
	blobtest.CheckTable(t, storageCallsTable, "predict_on_upload", "results", "", calls)
}
