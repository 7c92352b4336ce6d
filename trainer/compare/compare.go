// Package compare puts training runs side by side (the W&B run-comparison
// role): one HTML page with PNG plots of the loss and accuracy curves
// overlaid, the final metrics, only the config keys that differ, the
// dataset manifest digests (same data or not) and per-class precision and
// recall. A run is a model directory as `trainer train` writes it: a local
// directory, file:///dir, gs://bucket/prefix, or a registry version
// (which is a copy of one).
package compare

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"image/color"
	"image/png"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/model"
	"github.com/orchard-mlops/orchard/shared/registry"
	"github.com/orchard-mlops/orchard/trainer/report"
)

// Files of a run directory that the page reads (written by trainer/train).
const (
	MetricsFile   = "metrics.jsonl"
	ConfusionFile = "confusion.json"
)

const maxFileBytes = 16 << 20

// Epoch is one line of metrics.jsonl (the fields the page plots).
type Epoch struct {
	Epoch         int     `json:"epoch"`
	TrainLoss     float64 `json:"train_loss"`
	TrainAccuracy float64 `json:"train_accuracy"`
	ValLoss       float64 `json:"val_loss"`
	ValAccuracy   float64 `json:"val_accuracy"`
}

// Confusion is confusion.json: validation counts [true][predicted] of the
// exported model in onnxruntime.
type Confusion struct {
	Labels []string `json:"labels"`
	Matrix [][]int  `json:"matrix"`
}

// Run is one loaded run.
type Run struct {
	Label     string // short name on the page
	URI       string
	Meta      *model.Metadata
	History   []Epoch
	Confusion *Confusion // nil: not recorded (older runs)
}

var versionArg = regexp.MustCompile(`^([a-z][a-z0-9-]*)@([A-Za-z0-9][A-Za-z0-9._-]*)$`)

// Resolve turns an argument into a run URI: NAME@VERSION is a version of
// the registry at registryURI; anything else is a directory or gs:// URI.
// op opens the registry (nil: local paths only).
func Resolve(ctx context.Context, op *blob.Opener, arg, registryURI string) (string, error) {
	m := versionArg.FindStringSubmatch(arg)
	if m == nil {
		return arg, nil
	}
	if registryURI == "" {
		return "", fmt.Errorf("compare: %s names a registry version: pass -registry (or REGISTRY_URI)", arg)
	}
	reg, err := registry.Open(ctx, registryURI, registry.Options{Storage: op})
	if err != nil {
		return "", fmt.Errorf("compare: %w", err)
	}
	if _, err := reg.Metadata(ctx, m[1], m[2]); err != nil {
		return "", fmt.Errorf("compare: %s: %w", arg, err)
	}
	return reg.VersionURI(m[1], m[2]), nil
}

// Load reads a run directory: model.json is required, metrics.jsonl and
// confusion.json are optional. op opens uri (nil: local paths only).
func Load(ctx context.Context, op *blob.Opener, uri string) (*Run, error) {
	st, err := op.Open(ctx, uri)
	if err != nil {
		return nil, fmt.Errorf("compare: %w", err)
	}
	return LoadFrom(ctx, st)
}

// LoadFrom is Load from an open store.
func LoadFrom(ctx context.Context, st blob.Store) (*Run, error) {
	b, _, err := st.Read(ctx, model.MetadataFile, maxFileBytes)
	if err != nil {
		return nil, fmt.Errorf("compare: %s: %w", st.URI(model.MetadataFile), err)
	}
	var meta model.Metadata
	if err := json.Unmarshal(b, &meta); err != nil {
		return nil, fmt.Errorf("compare: %s: %w", st.URI(model.MetadataFile), err)
	}
	r := &Run{Label: meta.Version, URI: st.URI(""), Meta: &meta}
	if b, _, err := st.Read(ctx, MetricsFile, maxFileBytes); err == nil {
		dec := json.NewDecoder(bytes.NewReader(b))
		for dec.More() {
			var e Epoch
			if err := dec.Decode(&e); err != nil {
				return nil, fmt.Errorf("compare: %s: %w", st.URI(MetricsFile), err)
			}
			r.History = append(r.History, e)
		}
	} else if !errors.Is(err, blob.ErrNotFound) {
		return nil, fmt.Errorf("compare: %w", err)
	}
	if b, _, err := st.Read(ctx, ConfusionFile, maxFileBytes); err == nil {
		var c Confusion
		if err := json.Unmarshal(b, &c); err != nil || len(c.Matrix) != len(c.Labels) {
			return nil, fmt.Errorf("compare: %s: malformed (%v)", st.URI(ConfusionFile), err)
		}
		r.Confusion = &c
	} else if !errors.Is(err, blob.ErrNotFound) {
		return nil, fmt.Errorf("compare: %w", err)
	}
	return r, nil
}

// Write renders the page for runs into the directory at outURI
// (index.html and its PNGs), opened by op (nil: local paths only).
func Write(ctx context.Context, op *blob.Opener, outURI, title string, runs []*Run) error {
	files, err := Render(title, runs)
	if err != nil {
		return err
	}
	st, err := op.Open(ctx, outURI)
	if err != nil {
		return fmt.Errorf("compare: %w", err)
	}
	for name, b := range files {
		ct := "image/png"
		if path.Ext(name) == ".html" {
			ct = "text/html; charset=utf-8"
		}
		if _, err := st.Write(ctx, name, b, blob.WriteOptions{ContentType: ct}); err != nil {
			return fmt.Errorf("compare: writing %s: %w", name, err)
		}
	}
	return nil
}

// palette: the categorical "tab10" colours, distinguishable on white.
var palette = []color.RGBA{report.Blue, report.Orange, report.Green, {214, 39, 40, 255}, {148, 103, 189, 255},
	{140, 86, 75, 255}, {227, 119, 194, 255}, {127, 127, 127, 255}, {188, 189, 34, 255}, {23, 190, 207, 255}}

// uniqueLabels makes the runs' labels distinct (versions may repeat).
func uniqueLabels(runs []*Run) {
	seen := map[string]int{}
	for _, r := range runs {
		if r.Label == "" {
			r.Label = "run"
		}
		seen[r.Label]++
	}
	n := map[string]int{}
	for _, r := range runs {
		if seen[r.Label] > 1 {
			base := r.Label
			n[base]++
			r.Label = fmt.Sprintf("%s#%d", base, n[base])
		}
	}
}

// Render returns the page's files.
func Render(title string, runs []*Run) (map[string][]byte, error) {
	if len(runs) == 0 {
		return nil, errors.New("compare: no runs")
	}
	uniqueLabels(runs)
	files := map[string][]byte{}
	plots := []struct {
		file, title string
		y           func(Epoch) float64
		log         bool
	}{
		{"val_loss.png", "validation loss", func(e Epoch) float64 { return e.ValLoss }, true},
		{"val_accuracy.png", "validation accuracy", func(e Epoch) float64 { return e.ValAccuracy }, false},
		{"train_loss.png", "train loss (smoothed labels, augmented)", func(e Epoch) float64 { return e.TrainLoss }, true},
		{"train_accuracy.png", "train accuracy", func(e Epoch) float64 { return e.TrainAccuracy }, false},
	}
	for _, p := range plots {
		var series []report.Series
		for i, r := range runs {
			s := report.Series{Name: r.Label, Color: palette[i%len(palette)]}
			for _, e := range r.History {
				s.X = append(s.X, float64(e.Epoch))
				s.Y = append(s.Y, p.y(e))
			}
			series = append(series, s)
		}
		var b bytes.Buffer
		if err := png.Encode(&b, report.LinePlot(p.title, "epoch", series, 640, 320, p.log)); err != nil {
			return nil, err
		}
		files[p.file] = b.Bytes()
	}
	var b bytes.Buffer
	if err := page.Execute(&b, view(title, runs)); err != nil {
		return nil, fmt.Errorf("compare: %w", err)
	}
	files["index.html"] = b.Bytes()
	return files, nil
}

type table struct {
	Header []string
	Rows   [][]string
}

type pageView struct {
	Title           string
	Runs            table
	Metrics         table
	ConfigDiff      table
	SameConfig      bool
	Datasets        table
	SameData        bool
	PerClass        table
	PerClassMissing []string
}

func view(title string, runs []*Run) pageView {
	v := pageView{Title: title}
	v.Runs.Header = []string{"run", "model", "version", "directory"}
	labels := []string{"metric"}
	for _, r := range runs {
		v.Runs.Rows = append(v.Runs.Rows, []string{r.Label, r.Meta.Name, r.Meta.Version, r.URI})
		labels = append(labels, r.Label)
	}
	v.Metrics = metricsTable(labels, runs)
	v.ConfigDiff, v.SameConfig = configDiff(labels, runs)
	v.Datasets.Header = []string{"run", "dataset", "manifest digest", "images", "skipped"}
	digests := map[string]bool{}
	for _, r := range runs {
		d := r.Meta.Dataset
		digests[d.ManifestDigest] = true
		v.Datasets.Rows = append(v.Datasets.Rows, []string{r.Label, d.URI, d.ManifestDigest, fmt.Sprint(d.Images), fmt.Sprint(d.Skipped)})
	}
	v.SameData = len(digests) == 1
	v.PerClass, v.PerClassMissing = perClass(runs)
	return v
}

func metricsTable(header []string, runs []*Run) table {
	t := table{Header: header}
	row := func(name string, f func(m *model.Metadata) string) {
		r := []string{name}
		for _, run := range runs {
			r = append(r, f(run.Meta))
		}
		t.Rows = append(t.Rows, r)
	}
	f4 := func(v float64) string { return fmt.Sprintf("%.4f", v) }
	row("validation accuracy (onnxruntime)", func(m *model.Metadata) string { return f4(m.Metrics.ValidationAccuracy) })
	row("validation loss (onnxruntime)", func(m *model.Metadata) string { return f4(m.Metrics.ValidationLoss) })
	row("train accuracy (best epoch)", func(m *model.Metadata) string { return f4(m.Metrics.TrainAccuracy) })
	row("train loss (best epoch)", func(m *model.Metadata) string { return f4(m.Metrics.TrainLoss) })
	row("epochs", func(m *model.Metadata) string { return fmt.Sprint(m.Metrics.Epochs) })
	row("validation images", func(m *model.Metadata) string { return fmt.Sprint(m.Metrics.ValidationImages) })
	extra := map[string]bool{}
	for _, r := range runs {
		for k := range r.Meta.Metrics.Extra {
			extra[k] = true
		}
	}
	for _, k := range sortedKeys(extra) {
		row(k, func(m *model.Metadata) string {
			if v, ok := m.Metrics.Extra[k]; ok {
				return fmt.Sprintf("%.4g", v)
			}
			return "-"
		})
	}
	return t
}

// configDiff lists the config keys whose values differ between runs.
func configDiff(header []string, runs []*Run) (table, bool) {
	flat := make([]map[string]string, len(runs))
	keys := map[string]bool{}
	for i, r := range runs {
		flat[i] = map[string]string{}
		var v any
		if len(r.Meta.TrainingConfig) > 0 && json.Unmarshal(r.Meta.TrainingConfig, &v) == nil {
			flatten("", v, flat[i])
		}
		for k := range flat[i] {
			keys[k] = true
		}
	}
	t := table{Header: append([]string{"key"}, header[1:]...)}
	for _, k := range sortedKeys(keys) {
		row := []string{k}
		differ := false
		for i := range runs {
			val, ok := flat[i][k]
			if !ok {
				val = "(unset)"
			}
			row = append(row, val)
			if val != row[1] {
				differ = true
			}
		}
		if differ {
			t.Rows = append(t.Rows, row)
		}
	}
	return t, len(t.Rows) == 0
}

func flatten(prefix string, v any, out map[string]string) {
	if m, ok := v.(map[string]any); ok {
		for k, x := range m {
			key := k
			if prefix != "" {
				key = prefix + "." + k
			}
			flatten(key, x, out)
		}
		return
	}
	if str, ok := v.(string); ok {
		out[prefix] = str
		return
	}
	b, _ := json.Marshal(v)
	out[prefix] = string(b)
}

// perClass puts each run's per-class precision and recall side by side,
// by label name (runs may order or choose labels differently).
func perClass(runs []*Run) (table, []string) {
	t := table{Header: []string{"class"}}
	stats := make([]map[string]report.ClassStats, len(runs))
	labels := map[string]bool{}
	var order []string
	var missing []string
	for i, r := range runs {
		if r.Confusion == nil {
			missing = append(missing, r.Label)
			continue
		}
		t.Header = append(t.Header, r.Label+" precision", r.Label+" recall")
		stats[i] = map[string]report.ClassStats{}
		for _, s := range report.PerClass(r.Confusion.Labels, r.Confusion.Matrix) {
			stats[i][s.Label] = s
			if !labels[s.Label] {
				labels[s.Label] = true
				order = append(order, s.Label)
			}
		}
	}
	for _, l := range order {
		row := []string{l}
		for i := range runs {
			if stats[i] == nil {
				continue
			}
			if s, ok := stats[i][l]; ok {
				row = append(row, fmt.Sprintf("%.4f", s.Precision), fmt.Sprintf("%.4f", s.Recall))
			} else {
				row = append(row, "-", "-")
			}
		}
		t.Rows = append(t.Rows, row)
	}
	return t, missing
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

var page = template.Must(template.New("compare").Funcs(template.FuncMap{"join": strings.Join}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:24px;max-width:1400px;color:#222}
table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f3f3f3}.same{color:#070}.differ{color:#b00}
</style></head><body>
<h1>{{.Title}}</h1>
{{define "table"}}<table><tr>{{range .Header}}<th>{{.}}</th>{{end}}</tr>
{{range .Rows}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>{{end}}</table>{{end}}
<h2>Runs</h2>{{template "table" .Runs}}
<h2>Learning curves</h2>
<img src="val_loss.png" alt="validation loss"> <img src="val_accuracy.png" alt="validation accuracy">
<img src="train_loss.png" alt="train loss"> <img src="train_accuracy.png" alt="train accuracy">
<h2>Final metrics</h2>{{template "table" .Metrics}}
<h2>Config differences</h2>
{{if .SameConfig}}<p class="same">The runs' resolved configurations are identical.</p>{{else}}<p>Only the keys whose values differ.</p>{{template "table" .ConfigDiff}}{{end}}
<h2>Datasets</h2>
{{if .SameData}}<p class="same" id="same-data">Same data: every run has the same dataset manifest digest.</p>{{else}}<p class="differ" id="different-data">Different data: the manifest digests differ (files, labels or split changed).</p>{{end}}
{{template "table" .Datasets}}
<h2>Per-class precision and recall (validation, onnxruntime)</h2>
{{if .PerClass.Rows}}{{template "table" .PerClass}}{{end}}
{{if .PerClassMissing}}<p>Not recorded for: {{join .PerClassMissing ", "}} (runs older than confusion.json).</p>{{end}}
</body></html>
`))
