package model

import (
	"errors"
	"fmt"
)

// checkpointMagic names this engine's checkpoints (the layout is EncodeCheckpoint's).
var checkpointMagic = []byte("PGTRAINCKPT1")

type checkpointHeader struct {
	Spec       checkpointSpec     `json:"spec"`
	Compile    *Compile           `json:"compile,omitempty"`
	Seed       int64              `json:"seed"`
	Iterations int64              `json:"iterations"`
	AccBeta1   float32            `json:"acc_beta1"`
	AccBeta2   float32            `json:"acc_beta2"`
	DropoutRNG []byte             `json:"dropout_rng"`
	ShuffleRNG []byte             `json:"shuffle_rng"`
	Tensors    []checkpointTensor `json:"tensors"`
}

type checkpointSpec struct {
	Name     string      `json:"name"`
	InputDim int         `json:"input_dim"`
	Layers   []LayerSpec `json:"layers"`
}

type checkpointTensor struct {
	Name  string `json:"name"`
	Slot  int    `json:"slot"` // 0 the weight, i+1 optimizer slot i
	Count int    `json:"count"`
}

// MarshalCheckpoint captures everything training depends on: weights (moving statistics
// included), the compile settings and optimizer state, the step counters and the random
// generators, so that UnmarshalCheckpoint followed by the same calls gives bit-identical
// results.
func (m *Sequential) MarshalCheckpoint() ([]byte, error) {
	h := checkpointHeader{
		Spec: checkpointSpec{Name: m.spec.Name, InputDim: m.inputDim, Layers: m.spec.Layers},
		Seed: m.seed,
	}
	var err error
	if h.DropoutRNG, err = m.dropoutRNG.marshal(); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if h.ShuffleRNG, err = m.shuffleRNG.marshal(); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	var tensors [][]float32
	add := func(name string, slot int, v []float32) {
		h.Tensors = append(h.Tensors, checkpointTensor{Name: name, Slot: slot, Count: len(v)})
		tensors = append(tensors, v)
	}
	if m.compiled {
		c := m.comp
		h.Compile = &c
		h.Iterations = m.opt.iterations
		h.AccBeta1, h.AccBeta2 = m.opt.accBeta1, m.opt.accBeta2
	}
	for _, p := range m.params {
		add(p.name, 0, p.w)
		if m.compiled {
			for i, s := range p.slots {
				add(p.name, i+1, s)
			}
		}
	}
	return EncodeCheckpoint(checkpointMagic, h, tensors)
}

// ErrCheckpointMismatch is returned when a checkpoint belongs to a different architecture.
var ErrCheckpointMismatch = errors.New("checkpoint does not match the model")

// parseCheckpoint decodes a checkpoint; values[i] holds h.Tensors[i].
func parseCheckpoint(b []byte) (h *checkpointHeader, values [][]float32, err error) {
	h = &checkpointHeader{}
	data, err := DecodeCheckpointHeader(b, checkpointMagic, h)
	if err != nil {
		return nil, nil, err
	}
	sizes := make([]int, len(h.Tensors))
	for i, t := range h.Tensors {
		sizes[i] = t.Count
	}
	if values, err = DecodeTensors(data, sizes); err != nil {
		return nil, nil, err
	}
	return h, values, nil
}

// LoadCheckpoint builds a model from a checkpoint alone.
func LoadCheckpoint(b []byte) (*Sequential, error) {
	h, values, err := parseCheckpoint(b)
	if err != nil {
		return nil, err
	}
	held := 0
	for _, v := range values {
		held += len(v)
	}
	if err := weightsFit(h.Spec, held); err != nil {
		return nil, err
	}
	spec := &Spec{Name: h.Spec.Name, InputDim: h.Spec.InputDim, Layers: h.Spec.Layers}
	c := Compile{}
	if h.Compile != nil {
		c = *h.Compile
	}
	m, err := New(spec, h.Spec.InputDim, c, h.Seed)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if err := m.restore(h, values); err != nil {
		return nil, err
	}
	return m, nil
}

// weightsFit refuses a header whose layers hold more weights than the checkpoint has values:
// the header is untrusted, New allocates every layer before restore compares anything, and a
// width of 2^31 or a product that overflows must not reach the allocator.
func weightsFit(s checkpointSpec, values int) error {
	dim, total := s.InputDim, 0
	if dim < 0 {
		return fmt.Errorf("checkpoint: input width %d", dim)
	}
	for i, l := range s.Layers {
		switch l.Type {
		case LayerDense:
			// in*units + units, checked before it is multiplied.
			if l.Units <= 0 || l.Units > values || dim > values/l.Units {
				return fmt.Errorf("checkpoint: layer %d of %d units on %d inputs does not fit %d values", i, l.Units, dim, values)
			}
			if dim*l.Units > values-total {
				return fmt.Errorf("checkpoint: layer %d needs more than the %d values the checkpoint holds", i, values)
			}
			total += dim * l.Units
			dim = l.Units
		case LayerBatchNorm:
			if dim > (values-total)/2 { // the moving mean and variance at least
				return fmt.Errorf("checkpoint: layer %d normalizes %d inputs with %d values left", i, dim, values-total)
			}
			total += 2 * dim
		}
	}
	return nil
}

// UnmarshalCheckpoint restores a checkpoint taken from a model of the same architecture:
// weights, compile settings, optimizer state, step counters and random generators.
func (m *Sequential) UnmarshalCheckpoint(b []byte) error {
	h, values, err := parseCheckpoint(b)
	if err != nil {
		return err
	}
	return m.restore(h, values)
}

// restore is UnmarshalCheckpoint once the checkpoint is decoded.
func (m *Sequential) restore(h *checkpointHeader, values [][]float32) error {
	if h.Spec.InputDim != m.inputDim || len(h.Spec.Layers) != len(m.spec.Layers) {
		return fmt.Errorf("%w: input %d with %d layers, model has input %d with %d layers",
			ErrCheckpointMismatch, h.Spec.InputDim, len(h.Spec.Layers), m.inputDim, len(m.spec.Layers))
	}
	for i, l := range h.Spec.Layers {
		ml := m.spec.Layers[i]
		if l.Type != ml.Type || l.Name != ml.Name || l.Units != ml.Units || l.UseBias != ml.UseBias ||
			l.Center != ml.Center || l.Scale != ml.Scale {
			return fmt.Errorf("%w: layer %d is %s %q, the model's is %s %q", ErrCheckpointMismatch, i, l.Type, l.Name, ml.Type, ml.Name)
		}
	}
	byKey := map[[2]any][]float32{}
	for i, t := range h.Tensors {
		byKey[[2]any{t.Name, t.Slot}] = values[i]
	}
	// Check everything before changing anything, so that a bad checkpoint leaves the model as it was.
	slotsWanted := 0
	if h.Compile != nil {
		c := *h.Compile
		if err := c.normalize(); err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
		slotsWanted = newOptimizer(c.Optimizer).slotCount()
	}
	for _, p := range m.params {
		v, ok := byKey[[2]any{p.name, 0}]
		if !ok || len(v) != len(p.w) {
			return fmt.Errorf("%w: weight %q missing or of another size", ErrCheckpointMismatch, p.name)
		}
		if !p.trainable {
			continue
		}
		for i := 0; i < slotsWanted; i++ {
			sv, ok := byKey[[2]any{p.name, i + 1}]
			if !ok || len(sv) != len(p.w) {
				return fmt.Errorf("%w: optimizer slot %d of %q missing", ErrCheckpointMismatch, i, p.name)
			}
		}
	}
	if h.Compile != nil {
		if err := m.Compile(*h.Compile); err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
	}
	for _, p := range m.params {
		copy(p.w, byKey[[2]any{p.name, 0}])
		for i, s := range p.slots {
			copy(s, byKey[[2]any{p.name, i + 1}])
		}
	}
	if m.opt != nil {
		m.opt.iterations = h.Iterations
		m.opt.accBeta1, m.opt.accBeta2 = h.AccBeta1, h.AccBeta2
	}
	m.seed = h.Seed
	if err := m.dropoutRNG.unmarshal(h.DropoutRNG); err != nil {
		return fmt.Errorf("checkpoint: dropout generator: %w", err)
	}
	if err := m.shuffleRNG.unmarshal(h.ShuffleRNG); err != nil {
		return fmt.Errorf("checkpoint: shuffle generator: %w", err)
	}
	return nil
}
