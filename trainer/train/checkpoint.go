package train

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/orchard-mlops/orchard/trainer/cnn"
)

// CheckpointFile is the checkpoint's object name in the checkpoint store.
const CheckpointFile = "checkpoint.bin"

const checkpointMagic = "ORCHARD-CKPT-1\n"

// savedVar is one variable's value, detached from the backend.
type savedVar struct {
	Path      string `json:"path"`
	DType     string `json:"dtype"`
	Dims      []int  `json:"dims"`
	Trainable bool   `json:"trainable"`
	Offset    int64  `json:"offset"`
	Len       int64  `json:"len"`
	data      []byte
}

// State is the training progress saved with the variables.
type State struct {
	Fingerprint string         `json:"fingerprint"` // config + dataset identity; resume only when equal
	Version     string         `json:"version"`
	Epoch       int            `json:"epoch"` // completed epochs
	Done        bool           `json:"done"`  // training loop finished (early stop or last epoch)
	History     []EpochMetrics `json:"history"`
	BestEpoch   int            `json:"best_epoch"`
	BestAcc     float64        `json:"best_accuracy"`
	BestLoss    float64        `json:"best_loss"`
	BadEpochs   int            `json:"bad_epochs"`
}

type checkpointHeader struct {
	State State      `json:"state"`
	Vars  []savedVar `json:"vars"`
	Best  []savedVar `json:"best"` // model variables of the best epoch
}

// snapshot copies the variables whose path starts with prefix ("" for all).
func snapshot(store *model.Store, prefix string) ([]savedVar, error) {
	var out []savedVar
	for v := range store.IterVariables() {
		if !strings.HasPrefix(v.Path(), prefix) {
			continue
		}
		t, err := v.Value()
		if err != nil {
			return nil, fmt.Errorf("checkpoint: %s: %w", v.Path(), err)
		}
		var data []byte
		if err := t.ConstBytes(func(b []byte) { data = bytes.Clone(b) }); err != nil {
			return nil, fmt.Errorf("checkpoint: %s: %w", v.Path(), err)
		}
		out = append(out, savedVar{Path: v.Path(), DType: v.Shape().DType.String(), Dims: v.Shape().Dimensions,
			Trainable: v.Trainable, data: data})
	}
	return out, nil
}

func (s savedVar) tensor() (*tensors.Tensor, error) {
	dt, err := dtypes.DTypeString(s.DType)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %s: dtype %q: %w", s.Path, s.DType, err)
	}
	sh := shapes.Make(dt, s.Dims...)
	if int64(sh.ByteSize()) != int64(len(s.data)) {
		return nil, fmt.Errorf("checkpoint: %s: %d bytes for shape %s", s.Path, len(s.data), sh)
	}
	t := tensors.FromShape(sh)
	if err := t.MutableBytes(func(b []byte) { copy(b, s.data) }); err != nil {
		return nil, err
	}
	return t, nil
}

// restoreVars sets (creating when missing) every saved variable.
func restoreVars(store *model.Store, vars []savedVar) error {
	for _, s := range vars {
		t, err := s.tensor()
		if err != nil {
			return err
		}
		if v := store.GetVariable(s.Path); v != nil {
			if !v.Shape().Equal(t.Shape()) {
				return fmt.Errorf("checkpoint: %s has shape %s, model wants %s", s.Path, t.Shape(), v.Shape())
			}
			if err := v.SetValue(t); err != nil {
				return err
			}
			v.Trainable = s.Trainable
			continue
		}
		v, err := store.CreateVariable(s.Path, t)
		if err != nil {
			return err
		}
		v.Trainable = s.Trainable
	}
	return nil
}

// encodeCheckpoint serialises the state, all variables and the best model
// variables: a magic line, a little-endian uint64 header length, the JSON
// header, then the raw variable bytes.
func encodeCheckpoint(st State, vars, best []savedVar) []byte {
	var data bytes.Buffer
	place := func(vs []savedVar) []savedVar {
		out := make([]savedVar, len(vs))
		for i, v := range vs {
			v.Offset, v.Len = int64(data.Len()), int64(len(v.data))
			data.Write(v.data)
			out[i] = v
		}
		return out
	}
	h := checkpointHeader{State: st, Vars: place(vars), Best: place(best)}
	hj, err := json.Marshal(h)
	if err != nil {
		panic(err) // plain data
	}
	var out bytes.Buffer
	out.WriteString(checkpointMagic)
	_ = binary.Write(&out, binary.LittleEndian, uint64(len(hj)))
	out.Write(hj)
	out.Write(data.Bytes())
	return out.Bytes()
}

func decodeCheckpoint(b []byte) (*checkpointHeader, error) {
	if !bytes.HasPrefix(b, []byte(checkpointMagic)) {
		return nil, errors.New("checkpoint: not an Orchard checkpoint")
	}
	b = b[len(checkpointMagic):]
	if len(b) < 8 {
		return nil, errors.New("checkpoint: truncated")
	}
	n := binary.LittleEndian.Uint64(b)
	b = b[8:]
	if n > uint64(len(b)) {
		return nil, errors.New("checkpoint: truncated header")
	}
	var h checkpointHeader
	if err := json.Unmarshal(b[:n], &h); err != nil {
		return nil, fmt.Errorf("checkpoint: header: %w", err)
	}
	data := b[n:]
	fill := func(vs []savedVar) error {
		for i := range vs {
			v := &vs[i]
			if v.Offset < 0 || v.Len < 0 || v.Offset+v.Len > int64(len(data)) {
				return fmt.Errorf("checkpoint: %s: data out of range", v.Path)
			}
			v.data = data[v.Offset : v.Offset+v.Len]
		}
		return nil
	}
	if err := fill(h.Vars); err != nil {
		return nil, err
	}
	if err := fill(h.Best); err != nil {
		return nil, err
	}
	return &h, nil
}

// modelPrefix selects the network's own variables (not optimizer state).
const modelPrefix = "/" + cnn.Scope + "/"

// metricsPrefix holds GoMLX's metric accumulators: their names carry a
// per-process UUID and they are reset every epoch, so they are not saved.
const metricsPrefix = "/metrics/"
