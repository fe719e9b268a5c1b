package tensorflow

import (
	"errors"
	"fmt"
	"slices"

	"pgtrain/model"
)

// stateMagic names this backend's checkpoints, which have the Go engine's layout
// (model.EncodeCheckpoint) with a header of their own. The magic differs from the Go
// engine's, so each backend refuses the other's checkpoints by name.
var stateMagic = []byte("PGTRAINTFCK1")

// ErrCheckpointMismatch is returned for a checkpoint of another architecture, optimizer or
// backend.
var ErrCheckpointMismatch = errors.New("checkpoint does not match the model")

// stateHeader describes a checkpoint: enough of the architecture to refuse another model's
// checkpoint, the optimizer's step count, the dropout stream, and the tensors that follow.
type stateHeader struct {
	InputDim   int           `json:"input_dim"`
	Layers     []stateLayer  `json:"layers"`
	Optimizer  string        `json:"optimizer"`
	Slots      []string      `json:"slots"`
	Seed       int64         `json:"seed"`
	Iterations int64         `json:"iterations"`
	Dropout    []byte        `json:"dropout_stream"`
	Tensors    []stateTensor `json:"tensors"`
}

type stateLayer struct {
	Type  string `json:"type"`
	Name  string `json:"name"`
	Units int    `json:"units,omitempty"`
}

// stateTensor is a weight (Slot 0) or the optimizer slot Slot-1 of that weight.
type stateTensor struct {
	Name  string `json:"name"`
	Slot  int    `json:"slot"`
	Shape []int  `json:"shape"`
}

func (t stateTensor) size() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// encodeState writes a checkpoint; values[i] holds h.Tensors[i].
func encodeState(h *stateHeader, values [][]float32) ([]byte, error) {
	if len(values) != len(h.Tensors) {
		return nil, fmt.Errorf("checkpoint: %d tensors listed, %d given", len(h.Tensors), len(values))
	}
	for i, t := range h.Tensors {
		if len(values[i]) != t.size() {
			return nil, fmt.Errorf("checkpoint: %s slot %d has %d values, shape %v", t.Name, t.Slot, len(values[i]), t.Shape)
		}
	}
	return model.EncodeCheckpoint(stateMagic, h, values)
}

// decodeState reads a checkpoint written by encodeState, checking its framing and sizes.
func decodeState(b []byte) (*stateHeader, [][]float32, error) {
	var h stateHeader
	data, err := model.DecodeCheckpointHeader(b, stateMagic, &h)
	if errors.Is(err, model.ErrNotCheckpoint) {
		return nil, nil, fmt.Errorf("%w: not a checkpoint of the tensorflow backend", ErrCheckpointMismatch)
	}
	if err != nil {
		return nil, nil, err
	}
	// Sizes are products of shapes read from the file: bounding every factor by the values
	// left keeps a damaged shape from overflowing the product.
	sizes := make([]int, len(h.Tensors))
	left := len(data) / 4
	for i, t := range h.Tensors {
		c := 1
		for _, d := range t.Shape {
			if d < 0 || (d > 0 && c > left/d) {
				return nil, nil, fmt.Errorf("checkpoint: %s slot %d (shape %v) runs past the end", t.Name, t.Slot, t.Shape)
			}
			c *= d
		}
		if c > left {
			return nil, nil, fmt.Errorf("checkpoint: %s slot %d (shape %v) runs past the end", t.Name, t.Slot, t.Shape)
		}
		left -= c
		sizes[i] = c
	}
	values, err := model.DecodeTensors(data, sizes)
	if err != nil {
		return nil, nil, err
	}
	return &h, values, nil
}

// matches reports how a checkpoint header differs from the one this model would write
// (tensor values, step count and dropout state aside).
func (h *stateHeader) matches(want *stateHeader) error {
	switch {
	case h.InputDim != want.InputDim:
		return fmt.Errorf("%w: input width %d, the model's is %d", ErrCheckpointMismatch, h.InputDim, want.InputDim)
	case !slices.Equal(h.Layers, want.Layers):
		return fmt.Errorf("%w: layers %v, the model's are %v", ErrCheckpointMismatch, h.Layers, want.Layers)
	case h.Optimizer != want.Optimizer || !slices.Equal(h.Slots, want.Slots):
		return fmt.Errorf("%w: optimizer %s with slots %v, the model's is %s with %v",
			ErrCheckpointMismatch, h.Optimizer, h.Slots, want.Optimizer, want.Slots)
	case len(h.Tensors) != len(want.Tensors):
		return fmt.Errorf("%w: %d tensors, the model has %d", ErrCheckpointMismatch, len(h.Tensors), len(want.Tensors))
	}
	for i, t := range h.Tensors {
		w := want.Tensors[i]
		if t.Name != w.Name || t.Slot != w.Slot || !slices.Equal(t.Shape, w.Shape) {
			return fmt.Errorf("%w: tensor %d is %s slot %d %v, the model's is %s slot %d %v",
				ErrCheckpointMismatch, i, t.Name, t.Slot, t.Shape, w.Name, w.Slot, w.Shape)
		}
	}
	return nil
}
