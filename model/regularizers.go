package model

import (
	"encoding/json"
	"fmt"
	"math"
)

// Regularizer is a Keras L1, L2 or L1L2 weight or activity regularizer: the penalty
// L1·Σ|x| + L2·Σx² added to the training loss.
type Regularizer struct {
	L1 float64 `json:"l1,omitempty"`
	L2 float64 `json:"l2,omitempty"`
}

func (r *Regularizer) check() error {
	if !(r.L1 >= 0) || !(r.L2 >= 0) || math.IsInf(r.L1, 0) || math.IsInf(r.L2, 0) {
		return fmt.Errorf("regularizer factors must be finite and not negative, got l1 %v, l2 %v", r.L1, r.L2)
	}
	return nil
}

// penalty is L1·Σ|x| + L2·Σx², summed in float64.
func (r *Regularizer) penalty(x []float32) float64 {
	var a, s float64
	for _, v := range x {
		a += math.Abs(float64(v))
		s += float64(v) * float64(v)
	}
	return r.L1*a + r.L2*s
}

// addGrad adds scale·d penalty/dx to g: L1·sign(x) + 2·L2·x (the sign of 0 is 0, as in
// TensorFlow).
func (r *Regularizer) addGrad(x, g []float32, scale float64) {
	l1, l2 := float32(r.L1*scale), float32(2*r.L2*scale)
	for i, v := range x {
		d := l2 * v
		if v > 0 {
			d += l1
		} else if v < 0 {
			d -= l1
		}
		g[i] += d
	}
}

// parseKerasRegularizer reads {class_name: "L1"|"L2"|"L1L2", config} (and the string
// forms "l1", "l2", "l1_l2"), with Keras's defaults: 0.01 for L1 and L2, 0 for each
// factor of L1L2.
func parseKerasRegularizer(v json.RawMessage) (*Regularizer, error) {
	class, cfg, err := kerasObjectOf(v)
	if err != nil {
		return nil, fmt.Errorf("invalid regularizer: %v", err)
	}
	r := &Regularizer{}
	var keys []string
	switch normName(class) {
	case "l1":
		r.L1, keys = 0.01, []string{"l1"}
	case "l2":
		r.L2, keys = 0.01, []string{"l2"}
	case "l1l2":
		keys = []string{"l1", "l2"}
	default:
		return nil, fmt.Errorf("unsupported regularizer %q (supported: L1, L2, L1L2)", class)
	}
	for _, k := range keys {
		if raw, ok := cfg[k]; ok && !isNull(raw) {
			f, err := jsonNumber(raw)
			if err != nil {
				return nil, fmt.Errorf("regularizer %s: option %q must be a number", class, k)
			}
			if k == "l1" {
				r.L1 = f
			} else {
				r.L2 = f
			}
		}
		delete(cfg, k)
	}
	if err := refuseExtra(cfg, "regularizer "+class); err != nil {
		return nil, err
	}
	return r, r.check()
}

// kerasRegularizer is the exported form: L1L2, the one class TF.js reads, with both factors.
func kerasRegularizer(r *Regularizer) any {
	if r == nil {
		return nil
	}
	return kv{"class_name": "L1L2", "config": kv{"l1": r.L1, "l2": r.L2}}
}

// regularized reports whether any Dense layer of the model has a regularizer.
func (m *Sequential) regularized() bool {
	for _, l := range m.layers {
		if d, ok := l.(*denseLayer); ok && (d.ls.KernelRegularizer != nil || d.ls.BiasRegularizer != nil || d.ls.ActivityRegularizer != nil) {
			return true
		}
	}
	return false
}

// weightPenalty is the sum of the kernel and bias regularizers' penalties, on the current
// weights.
func (m *Sequential) weightPenalty() float64 {
	var p float64
	for _, l := range m.layers {
		d, ok := l.(*denseLayer)
		if !ok {
			continue
		}
		if r := d.ls.KernelRegularizer; r != nil {
			p += r.penalty(d.kernel.w)
		}
		if r := d.ls.BiasRegularizer; r != nil && d.bias != nil {
			p += r.penalty(d.bias.w)
		}
	}
	return p
}

// addWeightPenaltyGrads adds the kernel and bias regularizers' gradients to the
// backpropagated ones (the optimizer sees the gradient of loss + penalty).
func (m *Sequential) addWeightPenaltyGrads() {
	for _, l := range m.layers {
		d, ok := l.(*denseLayer)
		if !ok {
			continue
		}
		if r := d.ls.KernelRegularizer; r != nil {
			r.addGrad(d.kernel.w, d.kernel.g, 1)
		}
		if r := d.ls.BiasRegularizer; r != nil && d.bias != nil {
			r.addGrad(d.bias.w, d.bias.g, 1)
		}
	}
}

// activityPenalty is layer i's activity regularizer's penalty on its output y (rows rows),
// divided by the batch size as Keras does, or 0 when the layer has none.
func (m *Sequential) activityPenalty(i int, y []float32, rows int) float64 {
	d, ok := m.layers[i].(*denseLayer)
	if !ok || d.ls.ActivityRegularizer == nil {
		return 0
	}
	return d.ls.ActivityRegularizer.penalty(y[:rows*d.out]) / float64(rows)
}

// addActivityGrad adds the gradient of layer i's activity penalty to dy, the gradient with
// respect to the layer's output y.
func (m *Sequential) addActivityGrad(i int, y, dy []float32, rows int) {
	d, ok := m.layers[i].(*denseLayer)
	if !ok || d.ls.ActivityRegularizer == nil {
		return
	}
	n := rows * d.out
	d.ls.ActivityRegularizer.addGrad(y[:n], dy[:n], 1/float64(rows))
}

// regularizedGradients is gradients for a model with regularizers: the training-mode pass
// keeps each layer's output for the activity penalties, the loss includes every penalty
// (Keras's fit reports loss + penalties) and the gradients include theirs.
func (m *Sequential) regularizedGradients(x, y, w []float32, rows int) float64 {
	outs := make([][]float32, len(m.layers))
	h := x
	penalty := m.weightPenalty()
	for i, l := range m.layers {
		h = l.forward(h, rows, true, m.dropoutRNG)
		outs[i] = h
		penalty += m.activityPenalty(i, h, rows)
	}
	loss := m.lossAndGrad(h, y, w, rows)
	dy := m.lossGrad
	for i := len(m.layers) - 1; i >= 0; i-- {
		m.addActivityGrad(i, outs[i], dy, rows)
		dy = m.layers[i].backward(dy, rows, i > 0)
	}
	m.addWeightPenaltyGrads()
	return loss + penalty
}

// evalPenalty is the penalty evaluate adds to the mean loss: the weights' penalties and the
// activity penalties of an inference-mode pass, per row.
func (m *Sequential) evalPenalty(x []float32, rows int) float64 {
	p := m.weightPenalty()
	hasActivity := false
	for _, l := range m.layers {
		if d, ok := l.(*denseLayer); ok && d.ls.ActivityRegularizer != nil {
			hasActivity = true
		}
	}
	if !hasActivity {
		return p
	}
	in := m.inputDim
	var act float64
	for r0 := 0; r0 < rows; r0 += predictChunk {
		n := min(predictChunk, rows-r0)
		h := x[r0*in : (r0+n)*in]
		for i, l := range m.layers {
			h = l.forward(h, n, false, m.dropoutRNG)
			act += m.activityPenalty(i, h, n) * float64(n)
		}
	}
	return p + act/float64(rows)
}

// UnmarshalJSON reads pgtrain's form ({"l1": 0.01, "l2": 0.01}) or a Keras
// {class_name, config} object.
func (r *Regularizer) UnmarshalJSON(b []byte) error {
	if isKerasObject(b) {
		k, err := parseKerasRegularizer(b)
		if err != nil {
			return err
		}
		*r = *k
		return nil
	}
	type plain Regularizer
	var p plain
	if err := decodeStrict(b, &p); err != nil {
		return err
	}
	*r = Regularizer(p)
	return nil
}
