package blobtest

import (
	"testing"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/emulators"
)

// GCS is a store under prefix in a fresh bucket of a fake-gcs-server
// started for t (stopped when t ends). Like emulators.GCSForTest, it skips
// t when the server is not installed, or fails t under CI.
func GCS(t testing.TB, prefix string) blob.Store {
	t.Helper()
	g := emulators.GCSForTest(t)
	c := g.ClientForTest(t)
	bucket := emulators.UniqueName(t)
	if err := c.Bucket(bucket).Create(t.Context(), "test", nil); err != nil {
		t.Fatal(err)
	}
	return blob.NewGCS(c, bucket, prefix)
}
