package predict

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/model/modeltest"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/onnxrt/onnxrttest"
	"github.com/orchard-mlops/orchard/shared/registry"
)

// TestAppServesRegistryAlias configures the functions the way a deployment
// does (REGISTRY_URI, MODEL_NAME) and checks that Predict serves the
// production alias and follows it when it moves, without a restart.
func TestAppServesRegistryAlias(t *testing.T) {
	onnxrttest.Init(t)
	ctx := t.Context()
	root := t.TempDir()
	env := map[string]string{"REGISTRY_URI": "file://" + root, "MODEL_NAME": "colours", "MODEL_POLL_SECONDS": "1"}
	cfg, err := ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	cfg.ModelPoll = 20 * time.Millisecond // faster than the env allows
	app := NewApp(cfg, AppOptions{Log: quietLog()})
	t.Cleanup(func() { app.Close() })

	// No model yet: 503, not a crash.
	if w, _ := do(t, app.HTTP, httptest.NewRequest(http.MethodGet, "/", nil)); w.Code != http.StatusServiceUnavailable {
		t.Fatalf("before any model: GET = %d, want 503", w.Code)
	}

	st, err := blob.NewDir(root)
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(st, registry.Options{})
	publishColours := func(version string, labels []string) {
		src, err := blob.NewDir(modeltest.Dir(t, modeltest.Options{Version: version, Labels: labels, Accuracy: 0.9}))
		if err != nil {
			t.Fatal(err)
		}
		res, err := registry.PublishFrom(ctx, reg, src, registry.PublishOptions{Runtime: onnxrt.Runtime{}, Promote: true})
		if err != nil || !res.Promoted() {
			t.Fatalf("publishing %s: %v (%+v)", version, err, res)
		}
	}
	predictRed := func() (version, label string) {
		t.Helper()
		r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(redJPEG(t)))
		r.Header.Set("Content-Type", "image/jpeg")
		w, body := do(t, app.HTTP, r)
		if w.Code != 200 {
			return "", ""
		}
		preds := body["predictions"].([]any)
		return body["model"].(map[string]any)["version"].(string), preds[0].(map[string]any)["label"].(string)
	}
	waitFor := func(want string) string {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if v, label := predictRed(); v == want {
				return label
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("Predict never served %s", want)
		return ""
	}

	publishColours("v1", nil)
	if label := waitFor("v1"); label != "red" {
		t.Errorf("v1 says red is %q", label)
	}
	// v2 permutes the labels, so the same image gets a different answer:
	// proof that the new weights, not just a new name, are served.
	publishColours("v2", []string{"green", "red", "blue"})
	if label := waitFor("v2"); label != "green" {
		t.Errorf("v2 says red is %q, want green (its permuted label)", label)
	}
	if _, err := reg.Rollback(context.Background(), "colours", registry.RollbackOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("v1")
}

func TestConfigModelSource(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		ok   bool
	}{
		{"model uri", map[string]string{"MODEL_URI": "file:///m"}, true},
		{"registry", map[string]string{"REGISTRY_URI": "gs://b/reg", "MODEL_NAME": "fruits"}, true},
		{"neither", map[string]string{}, false},
		{"both: MODEL_URI wins", map[string]string{"MODEL_URI": "file:///m", "REGISTRY_URI": "gs://b/reg"}, true},
		{"registry without name", map[string]string{"REGISTRY_URI": "gs://b/reg"}, false},
		{"bad registry uri", map[string]string{"REGISTRY_URI": "s3://b/reg", "MODEL_NAME": "fruits"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ConfigFromEnv(func(k string) string { return tc.env[k] })
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && c.ModelAlias != "production" {
				t.Errorf("alias = %q, want production", c.ModelAlias)
			}
			if tc.ok && c.ServesRegistry() != (tc.env["MODEL_URI"] == "") {
				t.Errorf("ServesRegistry = %v with MODEL_URI %q", c.ServesRegistry(), tc.env["MODEL_URI"])
			}
		})
	}
}
