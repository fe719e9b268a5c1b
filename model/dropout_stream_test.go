package model_test

import (
	"testing"

	"pgtrain/model"
)

// layerMasks recovers the dropout masks a model's Dropout layer draws, one batch at a time,
// from a model built to expose them: dropout(rate) on inputs of 2^r in row r, then a
// bias-free linear Dense(1) whose kernel is reset to zero before each step, MSE against 1
// and SGD with learning rate 1. The step sets kernel j to Σ_r keep[r][j]·2^r·(2/rows)/(1 −
// rate) exactly (every factor is a power of two when rate is 0.5 and rows is 4), so its bits
// are the mask.
func layerMasks(t *testing.T, seed int64, features, rows, steps int) [][]float32 {
	t.Helper()
	spec := &model.Spec{InputDim: features, Layers: []model.LayerSpec{
		{Type: model.LayerDropout, Name: "drop", Rate: 0.5},
		{Type: model.LayerDense, Name: "out", Units: 1},
	}}
	c := model.Compile{Loss: "mse", Optimizer: model.OptimizerConfig{Name: "sgd", LearningRate: 1}}
	m, err := model.New(spec, features, c, seed)
	if err != nil {
		t.Fatal(err)
	}
	x := make([]float32, rows*features)
	for r := range rows {
		for j := range features {
			x[r*features+j] = float32(int(1) << r)
		}
	}
	y := make([]float32, rows)
	for r := range y {
		y[r] = 1
	}
	zero := []model.Tensor{{Name: "out/kernel", Shape: []int{features, 1}, Values: make([]float32, features)}}
	var masks [][]float32
	for range steps {
		if err := m.SetWeights(zero); err != nil {
			t.Fatal(err)
		}
		if _, err := m.TrainOnBatch(x, y, rows); err != nil {
			t.Fatal(err)
		}
		k := m.Weights()[0].Values
		mask := make([]float32, rows*features)
		for j, v := range k {
			bits := int(v)
			if float32(bits) != v || bits < 0 || bits >= 1<<rows {
				t.Fatalf("kernel %d is %v, not a %d-bit mask", j, v, rows)
			}
			for r := range rows {
				if bits&(1<<r) != 0 {
					mask[r*features+j] = 1
				}
			}
		}
		masks = append(masks, mask)
	}
	return masks
}

// TestDropoutStreamMatchesLayer holds the stream to the Dropout layer: the same seed gives
// the same masks, batch after batch, so dropout fed from the stream trains the same.
func TestDropoutStreamMatchesLayer(t *testing.T) {
	const features, rows, steps = 5, 4, 6
	for _, seed := range []int64{0, 1, 42, -7} {
		want := layerMasks(t, seed, features, rows, steps)
		s := model.NewDropoutStream(seed)
		kept := 0
		for step, w := range want {
			got := make([]float32, rows*features)
			s.Fill(got, 0.5)
			for i := range got {
				if got[i] != w[i] {
					t.Fatalf("seed %d, step %d: mask %v, the layer drew %v", seed, step, got, w)
				}
				kept += int(got[i])
			}
		}
		if n := steps * rows * features; kept == 0 || kept == n {
			t.Fatalf("seed %d: %d of %d elements kept: the masks do not vary", seed, kept, n)
		}
	}
}

func TestDropoutStreamCheckpoint(t *testing.T) {
	a := model.NewDropoutStream(3)
	warm := make([]float32, 17)
	a.Fill(warm, 0.3)
	state, err := a.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	b := model.NewDropoutStream(99)
	if err := b.UnmarshalBinary(state); err != nil {
		t.Fatal(err)
	}
	ma, mb := make([]float32, 64), make([]float32, 64)
	a.Fill(ma, 0.3)
	b.Fill(mb, 0.3)
	for i := range ma {
		if ma[i] != mb[i] {
			t.Fatalf("restored stream differs at %d: %v vs %v", i, ma, mb)
		}
	}
	if err := b.UnmarshalBinary([]byte("not a generator")); err == nil {
		t.Fatal("UnmarshalBinary accepted garbage")
	}
}
