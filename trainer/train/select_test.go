package train

import (
	"math"
	"testing"

	"github.com/orchard-mlops/orchard/trainer/config"
)

// TestImproves: train.select_by decides which epoch is kept. By accuracy,
// the one image that separates 99.85 from 99.69 % wins against a much
// lower loss; by loss, the lower loss wins unless it is within the margin.
func TestImproves(t *testing.T) {
	best := State{BestAcc: 0.9985, BestLoss: 0.23}
	cases := []struct {
		selectBy string
		m        EpochMetrics
		want     bool
	}{
		{config.SelectAccuracy, EpochMetrics{ValAccuracy: 0.9969, ValLoss: 0.15}, false},
		{config.SelectAccuracy, EpochMetrics{ValAccuracy: 0.9985, ValLoss: 0.15}, true}, // a tie, lower loss
		{config.SelectAccuracy, EpochMetrics{ValAccuracy: 1, ValLoss: 0.3}, true},
		{config.SelectLoss, EpochMetrics{ValAccuracy: 0.9969, ValLoss: 0.15}, true},
		{config.SelectLoss, EpochMetrics{ValAccuracy: 1, ValLoss: 0.3}, false},
		{config.SelectLoss, EpochMetrics{ValAccuracy: 1, ValLoss: 0.2298}, false}, // within the margin
	}
	for _, tc := range cases {
		cfg := config.Default()
		cfg.Train.SelectBy, cfg.Train.EarlyStoppingMinDelta = tc.selectBy, 0.0005
		r := &run{cfg: cfg, st: best}
		if got := r.improves(tc.m); got != tc.want {
			t.Errorf("select_by %s, %+v after %+v: improves %v, want %v", tc.selectBy, tc.m, best, got, tc.want)
		}
	}
	// The first epoch always improves on the starting state.
	r := &run{cfg: config.Default(), st: State{BestAcc: -1, BestLoss: math.Inf(1)}}
	if !r.improves(EpochMetrics{ValAccuracy: 0.1, ValLoss: 2.3}) {
		t.Error("the first epoch does not improve on the starting state")
	}
}
