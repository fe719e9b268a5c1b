package model

import "fmt"

// CheckStart says why a model of spec to, compiled with tc, cannot continue the training
// state of a stored model of spec from, compiled with fc: a layer whose weights differ
// (type, name, units, bias, BatchNormalization's center and scale), or an optimizer whose
// state does not carry over (another kind, or another number of slots: SGD or RMSprop
// with and without momentum). Hyperparameters such as the learning rate may change. The
// FieldError names the spec field at fault.
func CheckStart(from *Spec, fc Compile, to *Spec, tc Compile) *FieldError {
	if len(from.Layers) != len(to.Layers) {
		return &FieldError{Field: "model", Reason: fmt.Sprintf("%d layers, the stored model has %d", len(to.Layers), len(from.Layers))}
	}
	for i, f := range from.Layers {
		t := to.Layers[i]
		if f.Type != t.Type || f.Name != t.Name || f.Units != t.Units || f.UseBias != t.UseBias || f.Center != t.Center || f.Scale != t.Scale {
			return &FieldError{Field: fmt.Sprintf("model.layers[%d]", i), Reason: fmt.Sprintf("%s %q (%d units, use_bias %v), the stored model's is %s %q (%d units, use_bias %v): its weights would not fit",
				t.Type, t.Name, t.Units, t.UseBias, f.Type, f.Name, f.Units, f.UseBias)}
		}
	}
	if err := fc.normalize(); err != nil {
		return &FieldError{Field: "init_from", Reason: fmt.Sprintf("the stored model's compile settings: %v", err)}
	}
	if err := tc.normalize(); err != nil {
		return &FieldError{Field: "optimizer", Reason: err.Error()}
	}
	fo, to2 := newOptimizer(fc.Optimizer), newOptimizer(tc.Optimizer)
	if fc.Optimizer.Name != tc.Optimizer.Name {
		return &FieldError{Field: "optimizer.name", Reason: fmt.Sprintf("%s, the stored model was trained with %s: its optimizer state cannot continue under another optimizer",
			tc.Optimizer.Name, fc.Optimizer.Name)}
	}
	if fo.slotCount() != to2.slotCount() {
		return &FieldError{Field: "optimizer.momentum", Reason: fmt.Sprintf("%v keeps %d state tensors per weight, the stored model's (momentum %v) %d: its optimizer state cannot continue",
			tc.Optimizer.Momentum, to2.slotCount(), fc.Optimizer.Momentum, fo.slotCount())}
	}
	return nil
}

// StartFrom sets the model to a stored model's training state (MarshalCheckpoint of its last
// step): the weights, the optimizer's slots, step count and running products, and the
// random streams; the compile settings stay this model's, so a new learning rate applies
// from the first step. The stored model must pass CheckStart. Nothing changes on an error
// found before the weights are copied.
func (m *Sequential) StartFrom(b []byte) error {
	if !m.compiled {
		return ErrNotCompiled
	}
	h, values, err := parseCheckpoint(b)
	if err != nil {
		return fmt.Errorf("stored training state: %w", err)
	}
	if h.Compile == nil {
		return fmt.Errorf("stored training state: %w: it holds no optimizer state", ErrCheckpointMismatch)
	}
	own := m.comp
	if want, have := newOptimizer(own.Optimizer).slotCount(), newOptimizer(h.Compile.Optimizer).slotCount(); want != have || own.Optimizer.Name != h.Compile.Optimizer.Name {
		return fmt.Errorf("stored training state: %w: optimizer %s with %d slots, this model's is %s with %d",
			ErrCheckpointMismatch, h.Compile.Optimizer.Name, have, own.Optimizer.Name, want)
	}
	// restore compiles the stored settings; this model's come back with the state kept.
	if err := m.restore(h, values); err != nil {
		return fmt.Errorf("stored training state: %w", err)
	}
	slots := make([][][]float32, len(m.params))
	for i, p := range m.params {
		slots[i] = p.slots
	}
	iterations, acc1, acc2 := m.opt.iterations, m.opt.accBeta1, m.opt.accBeta2
	if err := m.Compile(own); err != nil {
		return err
	}
	for i, p := range m.params {
		p.slots = slots[i]
	}
	m.opt.iterations, m.opt.accBeta1, m.opt.accBeta2 = iterations, acc1, acc2
	return nil
}
