package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// buildTest builds a model from a layer list with random explicit weights and data.
func buildTest(t testing.TB, spec string, in int, c Compile, task string, classes, rows int, seed uint64) (*Sequential, []float32, []float32) {
	t.Helper()
	s, err := ParseSpec([]byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(s, in, c, int64(seed))
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(seed, 1))
	setExplicitWeights(t, m, r)
	x, y := makeData(r, rows, in, task, classes)
	return m, x, y
}

// checkGradients compares backpropagated gradients with central differences of the loss.
func checkGradients(t *testing.T, m *Sequential, x, y []float32, rows int) {
	t.Helper()
	m.gradients(x, y, nil, rows)
	analytic := map[*param][]float32{}
	for _, p := range m.params {
		if p.trainable {
			analytic[p] = append([]float32(nil), p.g...)
		}
	}
	loss := func() float64 {
		out := m.forward(x, rows, true)
		return m.loss.eval(out, y, rows, m.OutputDim(), nil)
	}
	const h = 2e-3
	for _, p := range m.params {
		if !p.trainable {
			continue
		}
		step := max(1, len(p.w)/12)
		for i := 0; i < len(p.w); i += step {
			orig := p.w[i]
			p.w[i] = orig + h
			up := loss()
			p.w[i] = orig - h
			down := loss()
			p.w[i] = orig
			num := (up - down) / (float64(p.w[i]+h) - float64(p.w[i]-h))
			ana := float64(analytic[p][i])
			if math.Abs(num-ana) > 2e-2*math.Abs(ana)+2e-4 {
				t.Errorf("d loss/d %s[%d]: backprop %.6g, finite difference %.6g", p.name, i, ana, num)
			}
		}
	}
}

func TestGradientsActivations(t *testing.T) {
	for _, act := range []string{"linear", "relu", "sigmoid", "tanh", "softmax", "elu", "selu", "gelu", "swish", "leaky_relu"} {
		t.Run(act, func(t *testing.T) {
			spec := fmt.Sprintf(`{"layers":[{"type":"dense","units":6,"activation":%q},{"type":"dense","units":2}]}`, act)
			m, x, y := buildTest(t, spec, 4, Compile{Loss: "mse"}, "regression", 2, 9, 3)
			checkGradients(t, m, x, y, 9)
		})
	}
	t.Run("activation and leaky relu layers", func(t *testing.T) {
		spec := `{"layers":[{"type":"dense","units":6},{"type":"leaky_relu","alpha":0.2},{"type":"dense","units":5},{"type":"activation","activation":"gelu"},{"type":"dense","units":3},{"type":"activation","activation":"softmax"}]}`
		m, x, y := buildTest(t, spec, 4, Compile{Loss: "categorical_crossentropy"}, "onehot", 3, 9, 4)
		checkGradients(t, m, x, y, 9)
	})
}

func TestGradientsLosses(t *testing.T) {
	tests := []struct {
		name, outAct, task string
		c                  Compile
		classes            int
	}{
		{"mse", "linear", "regression", Compile{Loss: "mse"}, 3},
		{"mae", "linear", "regression", Compile{Loss: "mae"}, 3},
		{"huber", "linear", "regression", Compile{Loss: "huber", HuberDelta: 0.5}, 3},
		{"bce", "sigmoid", "binary", Compile{Loss: "binary_crossentropy"}, 2},
		{"bce_logits", "linear", "binary", Compile{Loss: "binary_crossentropy", FromLogits: true}, 2},
		{"cce", "softmax", "onehot", Compile{Loss: "categorical_crossentropy"}, 4},
		{"cce_unnormalised", "sigmoid", "onehot", Compile{Loss: "categorical_crossentropy"}, 4},
		{"cce_logits", "linear", "onehot", Compile{Loss: "categorical_crossentropy", FromLogits: true}, 4},
		{"sparse", "softmax", "sparse", Compile{Loss: "sparse_categorical_crossentropy"}, 4},
		{"sparse_logits", "linear", "sparse", Compile{Loss: "sparse_categorical_crossentropy", FromLogits: true}, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := fmt.Sprintf(`{"layers":[{"type":"dense","units":5,"activation":"tanh"},{"type":"dense","units":%d,"activation":%q}]}`, tt.classes, tt.outAct)
			m, x, y := buildTest(t, spec, 3, tt.c, tt.task, tt.classes, 11, 5)
			checkGradients(t, m, x, y, 11)
		})
	}
}

func TestGradientsBatchNorm(t *testing.T) {
	for _, opts := range []string{``, `,"center":false`, `,"scale":false`} {
		t.Run("bn"+opts, func(t *testing.T) {
			spec := `{"layers":[{"type":"dense","units":5,"activation":"elu"},{"type":"batch_normalization"` + opts + `},{"type":"dense","units":4,"activation":"tanh"},{"type":"batch_normalization","epsilon":0.01},{"type":"dense","units":2}]}`
			m, x, y := buildTest(t, spec, 3, Compile{Loss: "mse"}, "regression", 2, 13, 6)
			checkGradients(t, m, x, y, 13)
		})
	}
}

// Dropout scales what it keeps by 1/(1-rate), drops about rate of its inputs, and passes
// gradients only through what it kept; at inference it is the identity.
func TestDropout(t *testing.T) {
	d := &dropoutLayer{ls: LayerSpec{Type: LayerDropout, Rate: 0.3}, dim: 100}
	x := make([]float32, 100*100)
	fill(x, 1)
	r := newRNG(1, streamDropout)
	y := d.forward(x, 100, true, r)
	dropped := 0
	for _, v := range y {
		switch {
		case v == 0:
			dropped++
		case math.Abs(float64(v)-1/0.7) > 1e-6:
			t.Fatalf("kept value %v, want 1/0.7", v)
		}
	}
	if frac := float64(dropped) / float64(len(y)); math.Abs(frac-0.3) > 0.02 {
		t.Errorf("dropped %.3f of the inputs, want about 0.3", frac)
	}
	dy := make([]float32, len(x))
	fill(dy, 1)
	dx := d.backward(dy, 100, true)
	for i := range dx {
		if (y[i] == 0) != (dx[i] == 0) {
			t.Fatalf("gradient at %d passes %v where the output was %v", i, dx[i], y[i])
		}
	}
	if inf := d.forward(x, 100, false, r); &inf[0] != &x[0] {
		t.Error("inference dropout is not the identity")
	}
}

// At inference, batch normalisation uses its moving statistics.
func TestBatchNormInference(t *testing.T) {
	ls := LayerSpec{Type: LayerBatchNorm, Name: "bn", Momentum: 0.9, Epsilon: 1e-3, Center: true, Scale: true}
	b := newBatchNorm(ls, 3)
	copy(b.gamma.w, []float32{0.5, 2, 1})
	copy(b.beta.w, []float32{0.1, -0.2, 0})
	copy(b.movingMean.w, []float32{1, -1, 0.5})
	copy(b.movingVar.w, []float32{4, 0.25, 1})
	x := []float32{1, 2, 3, -1, 0, 0.5}
	y := b.forward(x, 2, false, nil)
	for i, v := range x {
		j := i % 3
		want := (float64(v)-float64(b.movingMean.w[j]))/math.Sqrt(float64(b.movingVar.w[j])+1e-3)*float64(b.gamma.w[j]) + float64(b.beta.w[j])
		if math.Abs(float64(y[i])-want) > 1e-6 {
			t.Errorf("y[%d] = %v, want %v", i, y[i], want)
		}
	}
	// A training pass moves the statistics by (1-momentum) toward the batch's (biased) ones.
	b.forward(x, 2, true, nil)
	mean0 := (1.0 + -1) / 2
	var0 := ((1-mean0)*(1-mean0) + (-1-mean0)*(-1-mean0)) / 2
	if got, want := float64(b.movingMean.w[0]), 0.9*1+0.1*mean0; math.Abs(got-want) > 1e-6 {
		t.Errorf("moving mean %v, want %v", got, want)
	}
	if got, want := float64(b.movingVar.w[0]), 0.9*4+0.1*var0; math.Abs(got-want) > 1e-6 {
		t.Errorf("moving variance %v, want %v", got, want)
	}
}
