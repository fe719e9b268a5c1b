package model

import (
	"math"
	"testing"
)

// refRegularized is a float64 reference of dense(tanh) → dense(linear) with MSE and Keras's
// penalties: kernel L1L2 and bias L2 on the first layer, an activity L1L2 on the first
// layer's output (divided by the batch size) and a kernel L2 on the second.
type refRegularized struct {
	in, hid, out   int
	w1, b1, w2, b2 []float64
}

const (
	refK1L1, refK1L2 = 0.01, 0.02
	refB1L2          = 0.03
	refActL1         = 0.004
	refActL2         = 0.005
	refK2L2          = 0.015
)

const refRegularizedSpec = `{"layers":[` +
	`{"type":"dense","units":5,"activation":"tanh","name":"h","kernel_regularizer":{"l1":0.01,"l2":0.02},"bias_regularizer":{"l2":0.03},"activity_regularizer":{"l1":0.004,"l2":0.005}},` +
	`{"type":"dense","units":2,"name":"out","kernel_regularizer":{"l2":0.015}}]}`

func (r *refRegularized) loss(x, y []float32, rows int) float64 {
	var data, act float64
	for i := 0; i < rows; i++ {
		h := make([]float64, r.hid)
		for j := range h {
			s := r.b1[j]
			for k := 0; k < r.in; k++ {
				s += float64(x[i*r.in+k]) * r.w1[k*r.hid+j]
			}
			h[j] = math.Tanh(s)
			act += refActL1*math.Abs(h[j]) + refActL2*h[j]*h[j]
		}
		for j := 0; j < r.out; j++ {
			s := r.b2[j]
			for k := range h {
				s += h[k] * r.w2[k*r.out+j]
			}
			d := s - float64(y[i*r.out+j])
			data += d * d / float64(r.out)
		}
	}
	pen := 0.0
	for _, v := range r.w1 {
		pen += refK1L1*math.Abs(v) + refK1L2*v*v
	}
	for _, v := range r.b1 {
		pen += refB1L2 * v * v
	}
	for _, v := range r.w2 {
		pen += refK2L2 * v * v
	}
	return data/float64(rows) + act/float64(rows) + pen
}

func refFrom(m *Sequential) *refRegularized {
	r := &refRegularized{in: m.InputDim(), hid: 5, out: 2}
	to64 := func(v []float32) []float64 {
		out := make([]float64, len(v))
		for i, x := range v {
			out[i] = float64(x)
		}
		return out
	}
	ws := m.Weights()
	r.w1, r.b1, r.w2, r.b2 = to64(ws[0].Values), to64(ws[1].Values), to64(ws[2].Values), to64(ws[3].Values)
	return r
}

// TestRegularizedLossAndGradients checks the training loss (loss + every penalty, as Keras's
// fit reports it) against the float64 reference, and the gradients against central
// differences of the reference.
func TestRegularizedLossAndGradients(t *testing.T) {
	m, x, y := buildTest(t, refRegularizedSpec, 4, Compile{Loss: "mse", Optimizer: OptimizerConfig{Name: "sgd"}}, "regression", 2, 24, 31)
	ref := refFrom(m)
	got := m.gradients(x, y, nil, 24)
	want := ref.loss(x, y, 24)
	if math.Abs(got-want) > 1e-5*math.Abs(want) {
		t.Fatalf("training loss %.9g, reference %.9g", got, want)
	}
	refParams := [][]float64{ref.w1, ref.b1, ref.w2, ref.b2}
	const h = 1e-4
	for pi, p := range m.params {
		w := refParams[pi]
		for i := range w {
			orig := w[i]
			w[i] = orig + h
			up := ref.loss(x, y, 24)
			w[i] = orig - h
			down := ref.loss(x, y, 24)
			w[i] = orig
			num := (up - down) / (2 * h)
			if ana := float64(p.g[i]); math.Abs(num-ana) > 1e-3*math.Abs(num)+1e-5 {
				t.Errorf("d loss/d %s[%d]: backprop %.6g, reference %.6g", p.name, i, ana, num)
			}
		}
	}
	// Keras's evaluate reports the penalties too (inference mode: the same here, no dropout).
	ev, err := m.Evaluate(x, y, 24)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(ev["loss"]-want) > 1e-5*want {
		t.Errorf("evaluate loss %.9g, reference %.9g", ev["loss"], want)
	}
}

// TestConstraintsAfterStep checks that every step leaves the constrained weights inside
// their constraints, and that an unconstrained model trains as before (no projection).
func TestConstraintsAfterStep(t *testing.T) {
	spec := `{"layers":[{"type":"dense","units":6,"activation":"relu","name":"h","kernel_constraint":{"kind":"max_norm","max_value":0.4},"bias_constraint":{"kind":"non_neg"}},` +
		`{"type":"dense","units":3,"name":"u","kernel_constraint":{"kind":"unit_norm","axis":1}},` +
		`{"type":"dense","units":1,"name":"o","kernel_constraint":{"kind":"min_max_norm","min_value":0.5,"max_value":0.7}}]}`
	m, x, y := buildTest(t, spec, 5, Compile{Loss: "mse", Optimizer: OptimizerConfig{Name: "sgd", LearningRate: 0.5}}, "regression", 1, 32, 5)
	for step := 0; step < 5; step++ {
		if _, err := m.TrainOnBatch(x, y, 32); err != nil {
			t.Fatal(err)
		}
		ws := m.Weights()
		colNorm := func(w Tensor, j int) float64 {
			s := 0.0
			for r := 0; r < w.Shape[0]; r++ {
				v := float64(w.Values[r*w.Shape[1]+j])
				s += v * v
			}
			return math.Sqrt(s)
		}
		for j := 0; j < 6; j++ {
			if n := colNorm(ws[0], j); n > 0.4+1e-6 {
				t.Errorf("step %d: h/kernel column %d has norm %v > max_value 0.4", step, j, n)
			}
			if b := ws[1].Values[j]; b < 0 {
				t.Errorf("step %d: h/bias[%d] = %v < 0 under NonNeg", step, j, b)
			}
		}
		for r := 0; r < 6; r++ {
			s := 0.0
			for j := 0; j < 3; j++ {
				v := float64(ws[2].Values[r*3+j])
				s += v * v
			}
			if math.Abs(math.Sqrt(s)-1) > 1e-5 {
				t.Errorf("step %d: u/kernel row %d has norm %v, want 1 (UnitNorm axis 1)", step, r, math.Sqrt(s))
			}
		}
		if n := colNorm(ws[4], 0); n < 0.5-1e-6 || n > 0.7+1e-6 {
			t.Errorf("step %d: o/kernel norm %v outside [0.5, 0.7]", step, n)
		}
	}
}

// TestSeededInitializer checks that a document's seeded initializer gives the same tensor
// whatever the model's seed, within its bounds, and an unseeded one follows the model's seed.
func TestSeededInitializer(t *testing.T) {
	doc := `{"class_name":"Sequential","config":{"name":"s","layers":[` +
		`{"class_name":"Dense","config":{"name":"a","units":4,"batch_input_shape":[null,3],"kernel_initializer":{"class_name":"RandomUniform","config":{"minval":-0.05,"maxval":0.05,"seed":7}}}},` +
		`{"class_name":"Dense","config":{"name":"b","units":1,"kernel_initializer":{"class_name":"RandomUniform","config":{"minval":-0.05,"maxval":0.05,"seed":null}}}}]}}`
	spec, err := ParseSpec([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	w := func(seed int64) []Tensor {
		m, err := New(spec, 0, Compile{}, seed)
		if err != nil {
			t.Fatal(err)
		}
		return m.Weights()
	}
	w1, w2 := w(1), w(2)
	for i, v := range w1[0].Values {
		if v != w2[0].Values[i] {
			t.Fatalf("seeded kernel differs between model seeds at %d: %v, %v", i, v, w2[0].Values[i])
		}
		if v < -0.05 || v > 0.05 {
			t.Fatalf("RandomUniform(-0.05, 0.05) drew %v", v)
		}
	}
	same := true
	for i, v := range w1[2].Values {
		same = same && v == w2[2].Values[i]
		if v < -0.05 || v > 0.05 {
			t.Fatalf("RandomUniform(-0.05, 0.05) drew %v", v)
		}
	}
	if same {
		t.Fatal("the unseeded kernel did not change with the model seed")
	}
}

// TestCheckpointKeepsRegularizersAndConstraints: a checkpoint carries every option, zeros
// that are not defaults included, so a resumed job trains the same model.
func TestCheckpointKeepsRegularizersAndConstraints(t *testing.T) {
	spec := `{"layers":[{"type":"dense","units":4,"name":"a","kernel_regularizer":{"l1":0.01},"activity_regularizer":{"l2":0.02},` +
		`"kernel_constraint":{"kind":"max_norm","max_value":0},"bias_constraint":{"kind":"min_max_norm","min_value":0.1,"max_value":0.2,"rate":0},` +
		`"kernel_initializer":{"class_name":"RandomUniform","config":{"minval":-0.1,"maxval":0.1,"seed":3}}},{"type":"dense","units":1,"name":"b"}]}`
	m, x, y := buildTest(t, spec, 3, Compile{Loss: "mse", Optimizer: OptimizerConfig{Name: "adam"}}, "regression", 1, 16, 9)
	if _, err := m.TrainOnBatch(x, y, 16); err != nil {
		t.Fatal(err)
	}
	b, err := m.MarshalCheckpoint()
	if err != nil {
		t.Fatal(err)
	}
	r, err := LoadCheckpoint(b)
	if err != nil {
		t.Fatal(err)
	}
	want, got := m.Spec().Layers[0], r.Spec().Layers[0]
	if *got.KernelConstraint != *want.KernelConstraint || *got.BiasConstraint != *want.BiasConstraint ||
		*got.KernelRegularizer != *want.KernelRegularizer || *got.ActivityRegularizer != *want.ActivityRegularizer ||
		*got.KernelInitializer.Seed != 3 {
		t.Fatalf("restored layer %+v, want %+v", got, want)
	}
	if got.KernelConstraint.MaxValue != 0 || got.BiasConstraint.Rate != 0 {
		t.Fatalf("zero options came back as defaults: %+v %+v", got.KernelConstraint, got.BiasConstraint)
	}
	// Both continue identically.
	l1, err := m.TrainOnBatch(x, y, 16)
	if err != nil {
		t.Fatal(err)
	}
	l2, err := r.TrainOnBatch(x, y, 16)
	if err != nil {
		t.Fatal(err)
	}
	if l1["loss"] != l2["loss"] {
		t.Fatalf("losses after restoring: %v, %v", l1["loss"], l2["loss"])
	}
}
