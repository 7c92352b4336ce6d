package registry_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/blob/blobtest"
	"github.com/orchard-mlops/orchard/shared/emulators"
	"github.com/orchard-mlops/orchard/shared/model"
	"github.com/orchard-mlops/orchard/shared/model/modeltest"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/registry"
)

func TestMain(m *testing.M) { os.Exit(emulators.RunTests(m)) }

// backends runs f against a local directory and a fake-gcs-server bucket.
func backends(t *testing.T, f func(t *testing.T, st blob.Store)) {
	t.Run("dir", func(t *testing.T) {
		st, err := blob.NewDir(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		f(t, st)
	})
	t.Run("gcs", func(t *testing.T) {
		f(t, blobtest.GCS(t, "registry"))
	})
}

// modelDir writes a colour model into a fresh directory store.
func modelDir(t testing.TB, o modeltest.Options) blob.Store {
	t.Helper()
	st, err := blob.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	modeltest.Save(t, modeltest.Colour(t, o), st)
	if _, err := st.Write(context.Background(), "report/index.html", []byte("<p>report "+o.Version+"</p>"), blob.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write(context.Background(), "checkpoints/ckpt.bin", []byte("not copied"), blob.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	return st
}

func publish(t testing.TB, reg *registry.Registry, o modeltest.Options, po registry.PublishOptions) *registry.PublishResult {
	t.Helper()
	res, err := registry.PublishFrom(context.Background(), reg, modelDir(t, o), po)
	if err != nil {
		t.Fatalf("publish %s: %v", o.Version, err)
	}
	return res
}

func TestPublishVersionsImmutable(t *testing.T) {
	backends(t, func(t *testing.T, st blob.Store) {
		ctx := t.Context()
		reg := registry.New(st, registry.Options{})
		res := publish(t, reg, modeltest.Options{Version: "v1", Accuracy: 0.9}, registry.PublishOptions{Runtime: onnxrt.Runtime{}, Promote: true, By: "alice"})
		if !res.Created || !res.Promoted() {
			t.Fatalf("first publish: created=%v promoted=%v (%+v)", res.Created, res.Promoted(), res.Decision)
		}
		if _, err := st.Attributes(ctx, "models/colours/versions/v1/report/index.html"); err != nil {
			t.Errorf("report not copied: %v", err)
		}
		if _, err := st.Attributes(ctx, "models/colours/versions/v1/checkpoints/ckpt.bin"); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("checkpoints were copied: %v", err)
		}

		// Identical content again: a no-op, still production.
		res = publish(t, reg, modeltest.Options{Version: "v1", Accuracy: 0.9}, registry.PublishOptions{Runtime: onnxrt.Runtime{}, Promote: true})
		if res.Created || !res.Promoted() {
			t.Errorf("identical re-publish: created=%v promoted=%v", res.Created, res.Promoted())
		}
		// Different content under the same version: refused.
		_, err := registry.PublishFrom(ctx, reg, modelDir(t, modeltest.Options{Version: "v1", Accuracy: 0.95}), registry.PublishOptions{})
		if !errors.Is(err, registry.ErrVersionConflict) {
			t.Errorf("conflicting re-publish: %v, want ErrVersionConflict", err)
		}
		// Name and version must agree with model.json.
		_, err = registry.PublishFrom(ctx, reg, modelDir(t, modeltest.Options{Version: "v2"}), registry.PublishOptions{Name: "other"})
		if !errors.Is(err, registry.ErrInvalid) || !strings.Contains(err.Error(), "-set name=other") {
			t.Errorf("name mismatch: %v", err)
		}

		publish(t, reg, modeltest.Options{Version: "v2", Accuracy: 0.8}, registry.PublishOptions{Runtime: onnxrt.Runtime{}, Promote: true})
		vs, err := reg.Versions(ctx, "colours")
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, v := range vs {
			got = append(got, fmt.Sprintf("%s acc=%.2f aliases=%v accepted=%v", v.Version, v.Metadata.Metrics.ValidationAccuracy,
				v.Aliases, v.Decision != nil && v.Decision.Accepted))
		}
		want := []string{"v1 acc=0.90 aliases=[production] accepted=true", "v2 acc=0.80 aliases=[] accepted=false"}
		if !slices.Equal(got, want) {
			t.Errorf("Versions:\n got %q\nwant %q", got, want)
		}
		models, err := reg.Models(ctx)
		if err != nil || !slices.Equal(models, []string{"colours"}) {
			t.Errorf("Models = %v, %v", models, err)
		}
		m, err := reg.LoadModel(ctx, "colours", "v2")
		if err != nil || m.Metadata.Version != "v2" || len(m.ONNX) == 0 {
			t.Errorf("LoadModel: %v", err)
		}
		if _, err := reg.LoadModel(ctx, "colours", "v9"); !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("LoadModel(v9) = %v, want ErrNotFound", err)
		}
	})
}

func TestGate(t *testing.T) {
	prod := modeltest.Colour(t, modeltest.Options{Version: "p", Accuracy: 0.9}).Metadata
	mk := func(acc float64, mutate func(*model.Metadata)) *model.Metadata {
		m := modeltest.Colour(t, modeltest.Options{Version: "c", Accuracy: acc}).Metadata
		if mutate != nil {
			mutate(&m)
		}
		return &m
	}
	tests := []struct {
		name   string
		cand   *model.Metadata
		prod   *model.Metadata
		o      registry.GateOptions
		ok     bool
		reason string
	}{
		{"first version", mk(0.5, nil), nil, registry.GateOptions{}, true, "no production"},
		{"better", mk(0.95, nil), &prod, registry.GateOptions{}, true, ">="},
		{"equal", mk(0.9, nil), &prod, registry.GateOptions{}, true, ">="},
		{"worse", mk(0.85, nil), &prod, registry.GateOptions{}, false, "below production"},
		{"worse within margin", mk(0.85, nil), &prod, registry.GateOptions{Margin: 0.05}, true, "margin 0.05"},
		{"worse beyond margin", mk(0.84, nil), &prod, registry.GateOptions{Margin: 0.05}, false, "below"},
		{"no metric", mk(0.9, func(m *model.Metadata) { m.Metrics.ValidationAccuracy = 0 }), &prod, registry.GateOptions{}, false, "no ORT-verified"},
		{"permuted labels", mk(0.9, func(m *model.Metadata) { m.Labels = []string{"blue", "red", "green"} }), &prod, registry.GateOptions{}, true, ">="},
		{"new labels", mk(0.9, func(m *model.Metadata) { m.Labels = []string{"red", "green", "cyan"} }), &prod, registry.GateOptions{}, false, "allow_new_labels"},
		{"new labels allowed", mk(0.9, func(m *model.Metadata) { m.Labels = []string{"red", "green", "cyan"} }), &prod, registry.GateOptions{AllowNewLabels: true}, true, "new label set accepted"},
		{"new labels allowed but worse", mk(0.5, func(m *model.Metadata) { m.Labels = []string{"red", "green", "cyan"} }), &prod, registry.GateOptions{AllowNewLabels: true}, false, "below"},
		{"input spec", mk(0.99, func(m *model.Metadata) {
			m.Preprocessing.Size = 16
			m.Input.Shape = m.Preprocessing.Shape(-1)
		}), &prod, registry.GateOptions{AllowNewLabels: true}, false, "input shape"},
		{"preprocessing", mk(0.99, func(m *model.Metadata) { m.Preprocessing.Mean[0] = 0.1 }), &prod, registry.GateOptions{}, false, "preprocessing"},
		{"negative margin", mk(0.99, nil), &prod, registry.GateOptions{Margin: -1}, false, "negative margin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, reason := registry.Gate(tt.cand, tt.prod, tt.o)
			if ok != tt.ok || !strings.Contains(reason, tt.reason) {
				t.Errorf("Gate = %v, %q; want %v and a reason mentioning %q", ok, reason, tt.ok, tt.reason)
			}
		})
	}
}

func TestPromoteRecordsDecisionsAndRollback(t *testing.T) {
	backends(t, func(t *testing.T, st blob.Store) {
		ctx := t.Context()
		reg := registry.New(st, registry.Options{})
		for _, v := range []struct {
			version string
			acc     float64
		}{{"v1", 0.80}, {"v2", 0.85}, {"v3", 0.90}, {"v4", 0.70}} {
			publish(t, reg, modeltest.Options{Version: v.version, Accuracy: v.acc}, registry.PublishOptions{Runtime: onnxrt.Runtime{}, Promote: true, By: "ci"})
		}
		prod := aliasVersion(t, reg, registry.Production)
		if prod != "v3" {
			t.Fatalf("production = %s, want v3", prod)
		}
		d, err := reg.Decision(ctx, "colours", "v4")
		if err != nil || d.Accepted || d.Baseline != "v3" || !strings.Contains(d.Reason, "below production v3") {
			t.Errorf("v4 decision = %+v, %v", d, err)
		}
		// A forced promotion passes the gate and says so.
		d, err = reg.Promote(ctx, "colours", "v4", registry.PromoteOptions{Runtime: onnxrt.Runtime{}, Force: true, By: "ops", Reason: "testing"})
		if err != nil || !d.Accepted || !d.Forced {
			t.Fatalf("forced promote = %+v, %v", d, err)
		}
		// Rollback walks back through history, skipping what was rolled back from.
		for _, want := range []string{"v3", "v2", "v1"} {
			a, err := reg.Rollback(ctx, "colours", registry.RollbackOptions{By: "ops", Reason: "bad model"})
			if err != nil {
				t.Fatal(err)
			}
			if a.Version != want {
				t.Fatalf("rollback went to %s, want %s (history %+v)", a.Version, want, a.History)
			}
		}
		if _, err := reg.Rollback(ctx, "colours", registry.RollbackOptions{}); !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("rollback past the first version = %v, want ErrNotFound", err)
		}
		a, err := reg.Rollback(ctx, "colours", registry.RollbackOptions{To: "v3"})
		if err != nil || a.Version != "v3" || a.Action != registry.ActionRollback {
			t.Errorf("rollback to v3 = %+v, %v", a, err)
		}
		if _, err := reg.Rollback(ctx, "colours", registry.RollbackOptions{To: "v9"}); !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("rollback to a missing version = %v", err)
		}
		// Explicit generation preconditions.
		cur, err := reg.Alias(ctx, "colours", registry.Production)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := reg.SetAlias(ctx, "colours", registry.Production, "v1", registry.MoveOptions{IfGeneration: cur.Generation + 1}); !errors.Is(err, registry.ErrConflict) {
			t.Errorf("stale generation: %v, want ErrConflict", err)
		}
		if _, err := reg.SetAlias(ctx, "colours", "staging", "v2", registry.MoveOptions{IfGeneration: -1}); err != nil {
			t.Errorf("create staging: %v", err)
		}
		if _, err := reg.SetAlias(ctx, "colours", "staging", "v1", registry.MoveOptions{IfGeneration: -1}); !errors.Is(err, registry.ErrConflict) {
			t.Errorf("create existing alias: %v, want ErrConflict", err)
		}
		if _, err := reg.SetAlias(ctx, "colours", registry.Production, "v1", registry.MoveOptions{IfGeneration: cur.Generation}); err != nil {
			t.Errorf("current generation: %v", err)
		}
		if _, err := reg.SetAlias(ctx, "colours", registry.Production, "nope", registry.MoveOptions{}); !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("alias to a missing version: %v", err)
		}
	})
}

func aliasVersion(t testing.TB, reg *registry.Registry, alias string) string {
	t.Helper()
	a, err := reg.Alias(context.Background(), "colours", alias)
	if err != nil {
		t.Fatal(err)
	}
	return a.Version
}

// TestConcurrentAliasMoves races alias moves against each other: with
// generation preconditions none may be lost.
func TestConcurrentAliasMoves(t *testing.T) {
	backends(t, func(t *testing.T, st blob.Store) {
		ctx := t.Context()
		reg := registry.New(st, registry.Options{})
		const n = 8
		for i := range n {
			publish(t, reg, modeltest.Options{Version: fmt.Sprintf("v%d", i), Accuracy: 0.5 + float64(i)/100}, registry.PublishOptions{})
		}

		t.Run("set", func(t *testing.T) {
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for i := range n {
				wg.Go(func() {
					_, err := reg.SetAlias(ctx, "colours", "race", fmt.Sprintf("v%d", i), registry.MoveOptions{By: fmt.Sprint(i)})
					errs <- err
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			a, err := reg.Alias(ctx, "colours", "race")
			if err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{a.Version: true}
			for _, h := range a.History {
				if seen[h.Version] {
					t.Errorf("version %s appears twice in the history", h.Version)
				}
				seen[h.Version] = true
			}
			if len(seen) != n {
				t.Errorf("alias history holds %d of %d moves: an update was lost (%+v)", len(seen), n, a)
			}
		})

		t.Run("promote", func(t *testing.T) {
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					if _, err := reg.Promote(ctx, "colours", fmt.Sprintf("v%d", i), registry.PromoteOptions{Runtime: onnxrt.Runtime{}}); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			if got := aliasVersion(t, reg, registry.Production); got != fmt.Sprintf("v%d", n-1) {
				t.Errorf("production = %s after racing promotions, want the most accurate v%d", got, n-1)
			}
			a, _ := reg.Alias(ctx, "colours", registry.Production)
			// Every accepted move raised accuracy: the chain is increasing.
			chain := append([]registry.AliasChange{a.AliasChange}, a.History...)
			for i := 0; i+1 < len(chain); i++ {
				if chain[i].Version <= chain[i+1].Version {
					t.Errorf("production moved from %s to %s: a worse model won a race", chain[i+1].Version, chain[i].Version)
				}
			}
		})
	})
}

func TestNamesValidated(t *testing.T) {
	reg := registry.New(must(blob.NewDir(t.TempDir())), registry.Options{})
	ctx := t.Context()
	for _, name := range []string{"", "Upper", "1abc", "a/b", "../x", strings.Repeat("a", 64)} {
		if _, err := reg.Versions(ctx, name); !errors.Is(err, registry.ErrInvalid) {
			t.Errorf("Versions(%q) = %v, want ErrInvalid", name, err)
		}
	}
	if _, err := reg.Metadata(ctx, "ok", "../etc"); !errors.Is(err, registry.ErrInvalid) {
		t.Errorf("version ../etc accepted: %v", err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
