package tensorflow

import (
	"errors"
	"testing"

	"pgtrain/messages"
	"pgtrain/model"
)

func TestCompileFromPlan(t *testing.T) {
	plan := &messages.Plan{Spec: messages.JobSpec{
		Optimizer: messages.OptimizerSpec{Name: "adamw", LearningRate: 0.01, Momentum: 0.5, Nesterov: true,
			Beta1: 0.8, Beta2: 0.99, Epsilon: 1e-6, Rho: 0.7, WeightDecay: 0.1, ClipNorm: 2},
		Loss: "categorical_crossentropy", FromLogits: true, Metrics: []string{"accuracy"},
	}}
	c := compileFromPlan(plan)
	want := model.OptimizerConfig{Name: "adamw", LearningRate: 0.01, Momentum: 0.5, Nesterov: true,
		Beta1: 0.8, Beta2: 0.99, Epsilon: 1e-6, Rho: 0.7, WeightDecay: 0.1, ClipNorm: 2}
	if c.Optimizer != want {
		t.Fatalf("optimizer %+v, want %+v", c.Optimizer, want)
	}
	if c.Loss != plan.Spec.Loss || !c.FromLogits || len(c.Metrics) != 1 || c.Metrics[0] != "accuracy" {
		t.Fatalf("compile %+v does not carry the spec's loss and metrics", c)
	}
}

func TestCheckSupported(t *testing.T) {
	tests := []struct {
		name    string
		c       model.Compile
		wantErr bool
	}{
		{name: "adam mse", c: model.Compile{Loss: "mse"}},
		{name: "sgd nesterov huber", c: model.Compile{Loss: "huber", Optimizer: model.OptimizerConfig{Name: "sgd", Momentum: 0.9, Nesterov: true}}},
		{name: "rmsprop sparse", c: model.Compile{Loss: "sparse_categorical_crossentropy", Optimizer: model.OptimizerConfig{Name: "rmsprop"}}},
		{name: "adamw clipnorm bce", c: model.Compile{Loss: "binary_crossentropy", Optimizer: model.OptimizerConfig{Name: "adamw", ClipNorm: 1}}},
		{name: "schedule", c: model.Compile{Loss: "mse", Optimizer: model.OptimizerConfig{
			Schedule: &model.Schedule{Kind: model.ScheduleExponential, DecaySteps: 10, DecayRate: 0.9}}}, wantErr: true},
		{name: "tfjs form", c: model.Compile{Loss: "mse", Optimizer: model.OptimizerConfig{TFJSForm: true}}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			err := checkSupported(c)
			if (err != nil) != tc.wantErr {
				t.Fatalf("checkSupported = %v, wantErr %v", err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("checkSupported = %v, want ErrUnsupported", err)
			}
		})
	}
}
