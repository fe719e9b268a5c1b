package tensorflow

import (
	"errors"
	"testing"

	"pgtrain/model"
)

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
