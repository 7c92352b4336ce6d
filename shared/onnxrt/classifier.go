package onnxrt

import (
	"fmt"

	onnx "github.com/yalue/onnxruntime_go"

	"github.com/orchard-mlops/orchard/shared/errlist"
	"github.com/orchard-mlops/orchard/shared/model"
	"github.com/orchard-mlops/orchard/shared/monitor"
	"github.com/orchard-mlops/orchard/shared/preprocess"
	"github.com/orchard-mlops/orchard/shared/signals"
)

// Options tune a Classifier.
type Options struct {
	// IntraOpThreads is onnxruntime's thread count inside one run. On 1-2
	// vCPU, one thread with concurrency across requests beats intra-op
	// threading for small CNNs, hence the default of 1.
	IntraOpThreads int
	// Limits bound the images Classify accepts.
	Limits preprocess.Limits
}

// Classifier runs a model with onnxruntime. It holds one
// DynamicAdvancedSession, created once (creating sessions per request leaks
// memory in practice), and is safe for concurrent use.
type Classifier struct {
	meta     model.Metadata
	baseline *monitor.Baseline
	limits   preprocess.Limits
	sess     *onnx.DynamicAdvancedSession
}

// NewClassifier initialises onnxruntime if needed, checks the graph against
// the metadata, and creates the session.
func NewClassifier(m *model.Model, opts Options) (*Classifier, error) {
	if err := Init(); err != nil {
		return nil, err
	}
	if err := checkGraph(m); err != nil {
		return nil, fmt.Errorf("model %s: %w", m.URI, err)
	}
	so, err := onnx.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("creating session options: %w", err)
	}
	defer so.Destroy()
	threads := opts.IntraOpThreads
	if threads <= 0 {
		threads = 1
	}
	if err := so.SetIntraOpNumThreads(threads); err != nil {
		return nil, fmt.Errorf("setting intra-op threads: %w", err)
	}
	if err := so.SetInterOpNumThreads(1); err != nil {
		return nil, fmt.Errorf("setting inter-op threads: %w", err)
	}
	sess, err := onnx.NewDynamicAdvancedSessionWithONNXData(m.ONNX,
		[]string{m.Metadata.Input.Name}, []string{m.Metadata.Output.Name}, so)
	if err != nil {
		return nil, fmt.Errorf("model %s: creating onnxruntime session: %w", m.URI, err)
	}
	return &Classifier{meta: m.Metadata, baseline: m.Baseline, limits: opts.Limits, sess: sess}, nil
}

// checkGraph compares the graph's declared input and output with the
// metadata, so a mismatched pair fails here and names the difference.
func checkGraph(m *model.Model) error {
	ins, outs, err := onnx.GetInputOutputInfoWithONNXData(m.ONNX)
	if err != nil {
		return fmt.Errorf("reading %s: %w", model.ONNXFile, err)
	}
	find := func(kind string, infos []onnx.InputOutputInfo, want model.TensorSpec) error {
		var names []string
		for _, in := range infos {
			names = append(names, in.Name)
			if in.Name != want.Name {
				continue
			}
			if in.DataType != onnx.TensorElementDataTypeFloat {
				return fmt.Errorf("graph %s %q is %v, want float32", kind, in.Name, in.DataType)
			}
			if !model.ShapeMatches(in.Dimensions, want.Shape) {
				return fmt.Errorf("graph %s %q has shape %v, %s declares %v", kind, in.Name, in.Dimensions, model.MetadataFile, want.Shape)
			}
			return nil
		}
		return fmt.Errorf("graph has no %s %q (it has %v)", kind, want.Name, names)
	}
	return errlist.Join(find("input", ins, m.Metadata.Input), find("output", outs, m.Metadata.Output))
}

// Metadata returns the model's metadata.
func (c *Classifier) Metadata() *model.Metadata { return &c.meta }

// Baseline is the model's drift baseline, nil when it has none (its
// Check then flags nothing).
func (c *Classifier) Baseline() *monitor.Baseline { return c.baseline }

// Close releases the session.
func (c *Classifier) Close() error { return c.sess.Destroy() }

// Classify decodes and preprocesses one encoded image and returns the top k
// predictions. Image errors are *preprocess.Error.
func (c *Classifier) Classify(img []byte, k int) ([]model.Prediction, error) {
	ps, _, err := c.ClassifyStats(img, k)
	return ps, err
}

// ClassifyStats is Classify, also returning the image's input statistics
// for drift monitoring (computed in the same preprocessing pass).
func (c *Classifier) ClassifyStats(img []byte, k int) ([]model.Prediction, signals.Stats, error) {
	x := make([]float32, c.meta.Preprocessing.TensorLen())
	st, err := c.meta.Preprocessing.ProcessStats(img, c.limits, x)
	if err != nil {
		return nil, st, err
	}
	logits, err := c.Logits(x, 1)
	if err != nil {
		return nil, st, err
	}
	return c.TopK(logits, k), st, nil
}

// Logits runs a batch of n preprocessed images (n*TensorLen values) and
// returns n*len(labels) logits.
func (c *Classifier) Logits(batch []float32, n int) ([]float32, error) {
	if n < 1 || len(batch) != n*c.meta.Preprocessing.TensorLen() {
		return nil, fmt.Errorf("classify: batch of %d values is not %d images of %d", len(batch), n, c.meta.Preprocessing.TensorLen())
	}
	in, err := onnx.NewTensor(onnx.NewShape(c.meta.Preprocessing.Shape(n)...), batch)
	if err != nil {
		return nil, fmt.Errorf("classify: input tensor: %w", err)
	}
	defer in.Destroy()
	out, err := onnx.NewEmptyTensor[float32](onnx.NewShape(int64(n), int64(len(c.meta.Labels))))
	if err != nil {
		return nil, fmt.Errorf("classify: output tensor: %w", err)
	}
	defer out.Destroy()
	if err := c.sess.Run([]onnx.Value{in}, []onnx.Value{out}); err != nil {
		return nil, fmt.Errorf("classify: running the model: %w", err)
	}
	return append([]float32(nil), out.GetData()...), nil
}

// TopK turns one image's logits into the k most probable labels, sorted by
// score (ties by label), with softmax scores. k <= 0 or k > labels gives all.
func (c *Classifier) TopK(logits []float32, k int) []model.Prediction {
	return model.TopK(c.meta.Labels, logits, k)
}
