package sweep

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/orchard-mlops/orchard/shared/model"
)

// The cloudml-hypertune convention Vertex AI's tuning service reads: JSON
// lines in the file named by CLOUD_ML_HP_METRIC_FILE (default
// DefaultMetricFile), one object per report with the metric tag, the
// trial, the global step (both as strings, the value too) and a Unix
// timestamp; the file keeps the last MaxMetricEntries reports.
const (
	MetricFileEnv     = "CLOUD_ML_HP_METRIC_FILE"
	TrialIDEnv        = "CLOUD_ML_TRIAL_ID"
	DefaultMetricFile = "/tmp/hypertune/output.metrics"
	MaxMetricEntries  = 100
)

// MetricFile is where this process reports its metric.
func MetricFile() string {
	if p := os.Getenv(MetricFileEnv); p != "" {
		return p
	}
	return DefaultMetricFile
}

// Report appends one metric report to the file at path (keeping the last
// MaxMetricEntries), as cloudml-hypertune's report_hyperparameter_tuning_metric does.
func Report(path, tag string, value float64, step int64) error {
	if tag == "" {
		return errors.New("hypertune: empty metric tag")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("hypertune: %w", err)
	}
	var lines [][]byte
	if b, err := os.ReadFile(path); err == nil {
		lines = bytes.Split(bytes.TrimSpace(b), []byte("\n"))
		if len(lines) == 1 && len(lines[0]) == 0 {
			lines = nil
		}
	}
	trial := os.Getenv(TrialIDEnv)
	if trial == "" {
		trial = "0"
	}
	// encoding/json sorts map keys, as the Python library's sort_keys=True.
	entry, err := json.Marshal(map[string]any{
		"timestamp":   float64(time.Now().UnixMicro()) / 1e6,
		"trial":       trial,
		tag:           strconv.FormatFloat(value, 'g', -1, 64),
		"global_step": strconv.FormatInt(step, 10),
	})
	if err != nil {
		return fmt.Errorf("hypertune: %w", err)
	}
	lines = append(lines, entry)
	if len(lines) > MaxMetricEntries {
		lines = lines[len(lines)-MaxMetricEntries:]
	}
	out := append(bytes.Join(lines, []byte("\n")), '\n')
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, out, 0o644); err != nil {
		return fmt.Errorf("hypertune: %w", err)
	}
	return os.Rename(tmp, path)
}

// Measurement is the last report of a tag in a metric file.
type Measurement struct {
	Value float64
	Step  int64
}

// ReadMetric returns the last report of tag in a metric file's content
// (the one Vertex AI takes as the trial's final measurement).
// Unparseable lines are errors; a file without the tag is ErrNoMetric.
func ReadMetric(b []byte, tag string) (Measurement, error) {
	var last *Measurement
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			return Measurement{}, fmt.Errorf("hypertune: line %d: %w", n, err)
		}
		v, ok := m[tag]
		if !ok {
			continue
		}
		val, err := number(v)
		if err != nil {
			return Measurement{}, fmt.Errorf("hypertune: line %d: %s: %w", n, tag, err)
		}
		step, _ := number(m["global_step"])
		last = &Measurement{Value: val, Step: int64(step)}
	}
	if err := sc.Err(); err != nil {
		return Measurement{}, fmt.Errorf("hypertune: %w", err)
	}
	if last == nil {
		return Measurement{}, fmt.Errorf("%w %q", ErrNoMetric, tag)
	}
	return *last, nil
}

// ErrNoMetric: the trial never reported the metric.
var ErrNoMetric = errors.New("hypertune: no report of metric")

func number(v any) (float64, error) {
	switch x := v.(type) {
	case float64:
		return x, nil
	case string:
		return strconv.ParseFloat(x, 64)
	}
	return 0, fmt.Errorf("value %v is not a number", v)
}

// MetricValue reads a metric from model.json: validation_accuracy,
// validation_loss, train_accuracy, train_loss or a key of metrics.extra.
func MetricValue(m *model.Metadata, name string) (float64, error) {
	switch name {
	case "validation_accuracy":
		return m.Metrics.ValidationAccuracy, nil
	case "validation_loss":
		return m.Metrics.ValidationLoss, nil
	case "train_accuracy":
		return m.Metrics.TrainAccuracy, nil
	case "train_loss":
		return m.Metrics.TrainLoss, nil
	}
	if v, ok := m.Metrics.Extra[name]; ok {
		return v, nil
	}
	known := []string{"validation_accuracy", "validation_loss", "train_accuracy", "train_loss"}
	for k := range m.Metrics.Extra {
		known = append(known, k)
	}
	sort.Strings(known[4:])
	return 0, fmt.Errorf("unknown metric %q (model.json has %v)", name, known)
}
