package model

import (
	"math"
	"testing"
)

// Keras's weighted semantics on one batch: the loss is Σ w·loss_i / rows (not / Σ w), taken
// from the model before the step, and the compiled metrics are not weighted.
func TestTrainOnBatchWeightedIsKerasWeighting(t *testing.T) {
	spec, err := ParseSpec([]byte(`{"layers":[{"type":"dense","units":3,"activation":"softmax"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	c := Compile{Loss: "sparse_categorical_crossentropy", Metrics: []string{"accuracy"}, Optimizer: OptimizerConfig{Name: "sgd", LearningRate: 0.1}}
	m, err := New(spec, 2, c, 3)
	if err != nil {
		t.Fatal(err)
	}
	x := []float32{1, 0, 0, 1, -1, 0.5, 0.3, -2}
	y := []float32{0, 1, 2, 1}
	w, err := ClassWeights(y, 4, 1, []float64{0.5, 2, 0}, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	var wantLoss, accSum float64
	for r := 0; r < 4; r++ {
		res, err := m.Evaluate(x[r*2:(r+1)*2], y[r:r+1], 1)
		if err != nil {
			t.Fatal(err)
		}
		wantLoss += float64(w[r]) * res["loss"]
		accSum += res["accuracy"]
	}
	wantLoss /= 4
	got, err := m.TrainOnBatchWeighted(x, y, w, 4)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(got["loss"]-wantLoss) > 1e-6 || math.Abs(got["accuracy"]-accSum/4) > 1e-12 {
		t.Fatalf("loss %v accuracy %v, want %v and %v", got["loss"], got["accuracy"], wantLoss, accSum/4)
	}
	if _, err := ClassWeights([]float32{3}, 1, 1, []float64{1, 1, 1}, nil, false); err == nil {
		t.Error("a class without a weight was given one")
	}
	if _, err := m.TrainOnBatchWeighted(x, y, []float32{1, -1, 1, 1}, 4); err == nil {
		t.Error("a negative sample weight was accepted")
	}
	if _, err := m.TrainOnBatchWeighted(x, y, []float32{1, 1, float32(math.Inf(1)), 1}, 4); err == nil {
		t.Error("an infinite sample weight was accepted")
	}
	if _, err := m.TrainOnBatchWeighted(x, y, []float32{1, 1, 1}, 4); err == nil {
		t.Error("three sample weights for four rows were accepted")
	}
}

// Fit with sample_weight and class_weight against a float64 reference of Keras's rule: a
// softmax Dense layer trained by SGD, each step's gradient that of Σ sw·cw·loss / rows; the
// validation split keeps its rows' sample weights (and no class weights) for val_loss.
func TestFitSampleWeightMatchesFloat64Reference(t *testing.T) {
	spec, err := ParseSpec([]byte(`{"layers":[{"type":"dense","units":3,"activation":"softmax"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	const lr, in, units, rows, train, epochs = 0.5, 2, 3, 8, 6, 3
	c := Compile{Loss: "sparse_categorical_crossentropy", Metrics: []string{"accuracy"}, Optimizer: OptimizerConfig{Name: "sgd", LearningRate: lr}}
	m, err := New(spec, in, c, 7)
	if err != nil {
		t.Fatal(err)
	}
	x := []float32{1, 0, 0, 1, -1, 0.5, 0.3, -2, 2, 1, -0.5, -1.5, 0.7, 0.2, -1, 1}
	y := []float32{0, 1, 2, 1, 0, 2, 1, 0}
	sw := []float32{0.5, 2, 0, 1.5, 1, 3, 2.5, 0.25}
	cw := []float64{2, 0.5, 1}

	// The reference: the initial weights in float64.
	init := m.Weights()
	kernel, bias := make([]float64, in*units), make([]float64, units)
	for i, v := range init[0].Values {
		kernel[i] = float64(v)
	}
	for i, v := range init[1].Values {
		bias[i] = float64(v)
	}
	probs := func(r int) []float64 {
		z := make([]float64, units)
		var mx float64 = math.Inf(-1)
		for j := range z {
			z[j] = bias[j]
			for i := 0; i < in; i++ {
				z[j] += float64(x[r*in+i]) * kernel[i*units+j]
			}
			mx = math.Max(mx, z[j])
		}
		var s float64
		for j := range z {
			z[j] = math.Exp(z[j] - mx)
			s += z[j]
		}
		for j := range z {
			z[j] /= s
		}
		return z
	}
	var wantLoss, wantAcc []float64
	for e := 0; e < epochs; e++ {
		gk, gb := make([]float64, in*units), make([]float64, units)
		var loss, acc float64
		for r := 0; r < train; r++ {
			p := probs(r)
			cls := int(y[r])
			w := float64(sw[r]) * cw[cls]
			loss += w * -math.Log(p[cls])
			if argmax64(p) == cls {
				acc++
			}
			for j := 0; j < units; j++ {
				d := p[j]
				if j == cls {
					d--
				}
				d *= w / train
				gb[j] += d
				for i := 0; i < in; i++ {
					gk[i*units+j] += float64(x[r*in+i]) * d
				}
			}
		}
		wantLoss, wantAcc = append(wantLoss, loss/train), append(wantAcc, acc/train)
		for i := range kernel {
			kernel[i] -= lr * gk[i]
		}
		for j := range bias {
			bias[j] -= lr * gb[j]
		}
	}
	var valLoss float64
	for r := train; r < rows; r++ {
		valLoss += float64(sw[r]) * -math.Log(probs(r)[int(y[r])])
	}
	valLoss /= rows - train

	h, err := m.Fit(x, y, rows, FitOptions{Epochs: epochs, BatchSize: train, ValidationSplit: 0.25, ClassWeight: cw, SampleWeight: sw})
	if err != nil {
		t.Fatal(err)
	}
	for e := 0; e < epochs; e++ {
		if d := math.Abs(h.History["loss"][e] - wantLoss[e]); d > 1e-6 {
			t.Errorf("epoch %d: loss %v, reference %v", e, h.History["loss"][e], wantLoss[e])
		}
		if h.History["accuracy"][e] != wantAcc[e] {
			t.Errorf("epoch %d: accuracy %v, reference (unweighted) %v", e, h.History["accuracy"][e], wantAcc[e])
		}
	}
	if d := math.Abs(h.History["val_loss"][epochs-1] - valLoss); d > 1e-6 {
		t.Errorf("val_loss %v, reference %v", h.History["val_loss"][epochs-1], valLoss)
	}
	got := m.Weights()
	for i, v := range got[0].Values {
		if math.Abs(float64(v)-kernel[i]) > 1e-5 {
			t.Errorf("kernel[%d] = %v, reference %v", i, v, kernel[i])
		}
	}
	for j, v := range got[1].Values {
		if math.Abs(float64(v)-bias[j]) > 1e-5 {
			t.Errorf("bias[%d] = %v, reference %v", j, v, bias[j])
		}
	}
}

func argmax64(v []float64) int {
	best := 0
	for i := range v {
		if v[i] > v[best] {
			best = i
		}
	}
	return best
}
