package train

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/gomlx/compute"

	"github.com/orchard-mlops/orchard/trainer/config"
)

// BenchResult is the training throughput of one configuration.
type BenchResult struct {
	Conv         string  `json:"conv"`
	BatchNorm    bool    `json:"batch_norm"`
	InputSize    int     `json:"input_size"`
	Batch        int     `json:"batch"`
	Steps        int     `json:"steps"`
	CompileSecs  float64 `json:"compile_seconds"` // first step: graph build + compile + run
	ImagesPerSec float64 `json:"images_per_sec"`  // steady state, training step only
	InferPerSec  float64 `json:"infer_images_per_sec"`
}

// Bench measures training-step throughput (no data pipeline) for cfg on
// random inputs: one warm-up step (compilation), then steps timed steps,
// then inference over the same number of images.
func Bench(backend compute.Backend, cfg *config.Config, numClasses, steps int) (BenchResult, error) {
	arch := Arch(cfg, numClasses)
	bs := cfg.Train.BatchSize
	r := BenchResult{Conv: cfg.Model.Conv, BatchNorm: cfg.Model.BatchNorm, InputSize: cfg.Model.InputSize, Batch: bs, Steps: steps}
	eng, err := NewEngine(backend, cfg, arch, steps+1, 0)
	if err != nil {
		return r, err
	}
	per := 3 * arch.InputSize * arch.InputSize
	rng := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, bs*per)
	for i := range x {
		x[i] = rng.Float32()*2 - 1
	}
	y := make([]int32, bs)
	for i := range y {
		y[i] = int32(i % numClasses)
	}
	step := func() error {
		_, _, err := eng.Step(append([]float32(nil), x...), append([]int32(nil), y...))
		return err
	}
	t0 := time.Now()
	if err := step(); err != nil {
		return r, err
	}
	r.CompileSecs = time.Since(t0).Seconds()
	t0 = time.Now()
	for range steps {
		if err := step(); err != nil {
			return r, err
		}
	}
	r.ImagesPerSec = float64(steps*bs) / time.Since(t0).Seconds()
	if _, err := eng.Logits(x, bs, bs); err != nil { // compile
		return r, err
	}
	t0 = time.Now()
	for range steps {
		if _, err := eng.Logits(x, bs, bs); err != nil {
			return r, err
		}
	}
	r.InferPerSec = float64(steps*bs) / time.Since(t0).Seconds()
	return r, nil
}

func (b BenchResult) String() string {
	return fmt.Sprintf("conv=%-6s bn=%-5v size=%d batch=%d: train %.0f img/s, inference %.0f img/s (first step %.1fs)",
		b.Conv, b.BatchNorm, b.InputSize, b.Batch, b.ImagesPerSec, b.InferPerSec, b.CompileSecs)
}
