package model

import (
	"errors"
	"testing"
)

// A model that starts from another's training state continues it exactly (weights, Adam's
// moments, the step count, the dropout and shuffle streams) under its own compile settings:
// with the same settings it ends where the original ends.
func TestStartFromContinuesExactly(t *testing.T) {
	c := Compile{Loss: "categorical_crossentropy", Metrics: []string{"accuracy"}, Optimizer: OptimizerConfig{Name: "adam", LearningRate: 0.01}}
	full, x, y := buildTest(t, fitSpec, 4, c, "onehot", 3, 50, 11)
	opts := FitOptions{Epochs: 2, BatchSize: 16, Shuffle: true}
	if _, err := full.Fit(x, y, 50, opts); err != nil {
		t.Fatal(err)
	}
	state, err := full.MarshalCheckpoint()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := full.Fit(x, y, 50, opts); err != nil {
		t.Fatal(err)
	}
	s, _ := ParseSpec([]byte(fitSpec))
	next, err := New(s, 4, c, 999)
	if err != nil {
		t.Fatal(err)
	}
	if err := next.StartFrom(state); err != nil {
		t.Fatal(err)
	}
	if next.Iterations() != 8 {
		t.Fatalf("started at iteration %d, want 8", next.Iterations())
	}
	if _, err := next.Fit(x, y, 50, opts); err != nil {
		t.Fatal(err)
	}
	sameWeights(t, full.Weights(), next.Weights())
}

// The new model's compile settings win: a new learning rate applies from the first step.
func TestStartFromKeepsItsOwnLearningRate(t *testing.T) {
	c := Compile{Loss: "mse", Optimizer: OptimizerConfig{Name: "adam", LearningRate: 0.01}}
	a, x, y := buildTest(t, `{"layers":[{"type":"dense","units":4},{"type":"dense","units":1}]}`, 3, c, "regression", 1, 40, 3)
	if _, err := a.Fit(x, y, 40, FitOptions{Epochs: 1, BatchSize: 8}); err != nil {
		t.Fatal(err)
	}
	state, err := a.MarshalCheckpoint()
	if err != nil {
		t.Fatal(err)
	}
	slow := c
	slow.Optimizer.LearningRate = 0.0001
	b, _, _ := buildTest(t, `{"layers":[{"type":"dense","units":4},{"type":"dense","units":1}]}`, 3, slow, "regression", 1, 40, 3)
	if err := b.StartFrom(state); err != nil {
		t.Fatal(err)
	}
	sameWeights(t, a.Weights(), b.Weights())
	if b.LearningRate() != 0.0001 {
		t.Fatalf("learning rate %v after StartFrom, want the model's own 0.0001", b.LearningRate())
	}
}

func TestStartFromRefusesOtherModels(t *testing.T) {
	adam := Compile{Loss: "mse", Optimizer: OptimizerConfig{Name: "adam"}}
	spec := `{"layers":[{"type":"dense","units":4},{"type":"dense","units":1}]}`
	a, _, _ := buildTest(t, spec, 3, adam, "regression", 1, 1, 1)
	state, err := a.MarshalCheckpoint()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		spec      string
		c         Compile
		wantField string
	}{
		{"other width", `{"layers":[{"type":"dense","units":5},{"type":"dense","units":1}]}`, adam, "model.layers[0]"},
		{"more layers", `{"layers":[{"type":"dense","units":4},{"type":"dense","units":1},{"type":"dense","units":1}]}`, adam, "model"},
		{"other name", `{"layers":[{"type":"dense","units":4,"name":"x"},{"type":"dense","units":1}]}`, adam, "model.layers[0]"},
		{"other optimizer", spec, Compile{Loss: "mse", Optimizer: OptimizerConfig{Name: "sgd"}}, "optimizer.name"},
		{"momentum slots", spec, Compile{Loss: "mse", Optimizer: OptimizerConfig{Name: "rmsprop", Momentum: 0.5}}, "optimizer.name"},
	}
	from, _ := ParseSpec([]byte(spec))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			to, err := ParseSpec([]byte(tt.spec))
			if err != nil {
				t.Fatal(err)
			}
			fe := CheckStart(from, adam, to, tt.c)
			if fe == nil || fe.Field != tt.wantField {
				t.Fatalf("CheckStart: %+v, want a mismatch on %q", fe, tt.wantField)
			}
			b, _, _ := buildTest(t, tt.spec, 3, tt.c, "regression", 1, 1, 1)
			before := b.Weights()
			if err := b.StartFrom(state); !errors.Is(err, ErrCheckpointMismatch) {
				t.Fatalf("StartFrom: %v, want ErrCheckpointMismatch", err)
			}
			sameWeights(t, before, b.Weights())
		})
	}
	sgd := func(m float64) Compile {
		return Compile{Loss: "mse", Optimizer: OptimizerConfig{Name: "sgd", Momentum: m}}
	}
	if fe := CheckStart(from, sgd(0), from, sgd(0.9)); fe == nil || fe.Field != "optimizer.momentum" {
		t.Fatalf("SGD without and with momentum: %+v, want a mismatch on optimizer.momentum", fe)
	}
	if fe := CheckStart(from, sgd(0.5), from, sgd(0.9)); fe != nil {
		t.Fatalf("SGD with another momentum keeps its slots: %+v", fe)
	}
}
