package blob_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"cloud.google.com/go/storage"
	"google.golang.org/api/option"

	"github.com/orchard-mlops/orchard/shared/blob"
)

// TestGCSListAsksForPages: every listing request names a page size.
// Without one the client sends no maxResults and fake-gcs-server answers
// with the whole listing at once, so a streamed listing (the batch job's)
// held the whole prefix in memory. A recording HTTP server stands in for
// the JSON API: the emulator cannot say what it was asked.
func TestGCSListAsksForPages(t *testing.T) {
	var mu sync.Mutex
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.URL.Query().Get("maxResults"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"kind":"storage#objects","items":[{"name":"a.jpg","bucket":"b","generation":"1"}]}`)
	}))
	defer srv.Close()
	ctx := context.Background()
	c, err := storage.NewClient(ctx, option.WithEndpoint(srv.URL+"/storage/v1/"), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n := 0
	for _, err := range blob.NewGCS(c, "b", "").List(ctx, blob.ListOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	mu.Lock()
	defer mu.Unlock()
	if n != 1 || len(asked) != 1 || asked[0] != "1000" {
		t.Fatalf("listed %d objects in %d requests asking for maxResults %q, want 1 object in 1 request asking for 1000", n, len(asked), asked)
	}
}
