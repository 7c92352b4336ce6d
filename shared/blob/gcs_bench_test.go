package blob_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/blob/blobtest"
)

// BenchmarkGCSWrite writes a result-sized object, if absent, with the
// metadata a result carries: the batch job's and PredictOnUpload's write.
// Its CPU is the client's; fake-gcs-server runs in its own process.
func BenchmarkGCSWrite(b *testing.B) {
	st := blobtest.GCS(b, "")
	body := bytes.Repeat([]byte("x"), 600)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		key := fmt.Sprintf("photos/%06d.jpg.json", i)
		_, err := st.Write(b.Context(), key, body, blob.WriteOptions{IfNotExist: true, ContentType: "application/json",
			Metadata: map[string]string{"source-name": key, "source-bucket": "src", "source-generation": "1700000000000000"}})
		if err != nil {
			b.Fatal(err)
		}
	}
}
