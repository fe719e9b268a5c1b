package model

import (
	"math"
	"testing"
)

// Keras's weighted semantics on one batch: the loss is Σ w·loss_i / rows (not / Σ w) and the
// metrics are Σ w·m_i / Σ w, each row's loss and metric taken from the model before the step.
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
	w, err := ClassWeights(y, 4, 1, []float64{0.5, 2, 0}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wantLoss, accSum, wSum float64
	for r := 0; r < 4; r++ {
		res, err := m.Evaluate(x[r*2:(r+1)*2], y[r:r+1], 1)
		if err != nil {
			t.Fatal(err)
		}
		wantLoss += float64(w[r]) * res["loss"]
		accSum += float64(w[r]) * res["accuracy"]
		wSum += float64(w[r])
	}
	wantLoss /= 4
	got, err := m.TrainOnBatchWeighted(x, y, w, 4)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(got["loss"]-wantLoss) > 1e-6 || math.Abs(got["accuracy"]-accSum/wSum) > 1e-12 {
		t.Fatalf("loss %v accuracy %v, want %v and %v", got["loss"], got["accuracy"], wantLoss, accSum/wSum)
	}
	if _, err := ClassWeights([]float32{3}, 1, 1, []float64{1, 1, 1}, nil); err == nil {
		t.Error("a class without a weight was given one")
	}
	if _, err := m.TrainOnBatchWeighted(x, y, []float32{1, -1, 1, 1}, 4); err == nil {
		t.Error("a negative sample weight was accepted")
	}
}
