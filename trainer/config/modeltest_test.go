package config_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/orchard-mlops/orchard/shared/model/modeltest"
	"github.com/orchard-mlops/orchard/trainer/cnn"
	"github.com/orchard-mlops/orchard/trainer/config"
)

// shared/model/modeltest copies the trainer's default architecture and
// input-normalisation epsilon (shared/ does not import trainer/); these
// tests keep the copies equal.

func TestCNNInputNormEpsilonMatchesTrainer(t *testing.T) {
	if modeltest.CNNInputNormEpsilon != cnn.InputNormEpsilon {
		t.Fatalf("modeltest.CNNInputNormEpsilon = %v, trainer/cnn.InputNormEpsilon = %v: keep them equal", modeltest.CNNInputNormEpsilon, cnn.InputNormEpsilon)
	}
	if modeltest.CNNInputLogEpsilon != cnn.InputLogEpsilon {
		t.Fatalf("modeltest.CNNInputLogEpsilon = %v, trainer/cnn.InputLogEpsilon = %v: keep them equal", modeltest.CNNInputLogEpsilon, cnn.InputLogEpsilon)
	}
}

func TestModeltestCNNArchMatchesDefault(t *testing.T) {
	c := config.Default()
	want := modeltest.CNNArch{Name: c.Name, InputSize: c.Model.InputSize, InputNorm: c.Model.InputNorm,
		InputSpace: c.Model.InputSpace, Widths: c.Model.Widths, ConvsPerBlock: c.Model.ConvsPerBlock, BatchNorm: c.Model.BatchNorm,
		BNEpsilon: c.Model.BNEpsilon, Dense: c.Model.Dense, FoldBatchNorm: c.Export.FoldBatchNorm, Opset: c.Export.Opset}
	if diff := cmp.Diff(want, modeltest.DefaultCNNArch()); diff != "" {
		t.Errorf("modeltest.DefaultCNNArch differs from trainer/config's default (-trainer +modeltest):\n%s", diff)
	}
}
