package model_test

import (
	"errors"
	"strings"
	"testing"

	"pgtrain/messages"
	"pgtrain/model"
)

func TestCompileOf(t *testing.T) {
	spec := messages.JobSpec{
		Optimizer: messages.OptimizerSpec{Name: "adamw", LearningRate: 0.01, Momentum: 0.5, Nesterov: true,
			Beta1: 0.8, Beta2: 0.99, Epsilon: 1e-6, Rho: 0.7, WeightDecay: 0.1, ClipNorm: 2},
		Loss: "categorical_crossentropy", FromLogits: true, Metrics: []string{"accuracy"},
	}
	c := model.CompileOf(spec)
	want := model.OptimizerConfig{Name: "adamw", LearningRate: 0.01, Momentum: 0.5, Nesterov: true,
		Beta1: 0.8, Beta2: 0.99, Epsilon: 1e-6, Rho: 0.7, WeightDecay: 0.1, ClipNorm: 2}
	if c.Optimizer != want {
		t.Fatalf("optimizer %+v, want %+v", c.Optimizer, want)
	}
	if c.Loss != spec.Loss || !c.FromLogits || len(c.Metrics) != 1 || c.Metrics[0] != "accuracy" {
		t.Fatalf("compile %+v does not carry the spec's loss and metrics", c)
	}
}

func TestCheck(t *testing.T) {
	const classifier = `{"layers": [{"type": "dense", "units": 4, "activation": "relu"}, {"type": "dense", "units": 3}]}`
	onehot := model.Labels{Name: "species", Encode: messages.EncodeOneHot, Width: 3, Classes: 3}
	index := model.Labels{Name: "species", Encode: messages.EncodeIndex, Width: 1, Classes: 3}
	number := model.Labels{Name: "price", Width: 1}
	tests := []struct {
		name   string
		model  string
		c      model.Compile
		labels model.Labels
		want   []model.FieldError // Reason is a substring
	}{
		{name: "valid one-hot", model: classifier, c: model.Compile{Loss: "categorical_crossentropy", FromLogits: true, Metrics: []string{"accuracy"}}, labels: onehot},
		{name: "valid index", model: classifier, c: model.Compile{Loss: "SparseCategoricalCrossentropy"}, labels: index},
		{name: "unknown loss", model: classifier, c: model.Compile{Loss: "hinge"}, labels: onehot,
			want: []model.FieldError{{Field: "loss", Reason: `unsupported loss "hinge"`}}},
		{name: "logits of a regression", model: classifier, c: model.Compile{Loss: "mse", FromLogits: true}, labels: onehot,
			want: []model.FieldError{{Field: "from_logits", Reason: "crossentropy losses only"}}},
		{name: "every compile field", model: classifier,
			c:      model.Compile{Loss: "categorical_crossentropy", Metrics: []string{"f1"}, Optimizer: model.OptimizerConfig{Name: "adagrad"}},
			labels: index,
			want: []model.FieldError{{Field: "metrics", Reason: `"f1"`}, {Field: "optimizer", Reason: `unsupported optimizer "adagrad"`},
				{Field: "loss", Reason: `needs the label encoded as "onehot"`}}},
		{name: "sparse loss on one-hot labels", model: classifier, c: model.Compile{Loss: "sparse_categorical_crossentropy"}, labels: onehot,
			want: []model.FieldError{{Field: "loss", Reason: `needs the label encoded as "index"`}}},
		{name: "output narrower than the one-hot label", model: `{"layers": [{"type": "dense", "units": 2}]}`,
			c: model.Compile{Loss: "categorical_crossentropy"}, labels: onehot,
			want: []model.FieldError{{Field: "model", Reason: "outputs 2 values per row but the label encodes to 3"}}},
		{name: "one output for three classes", model: `{"layers": [{"type": "dense", "units": 1}]}`,
			c: model.Compile{Loss: "sparse_categorical_crossentropy"}, labels: index,
			want: []model.FieldError{{Field: "model", Reason: "the label has classes: 3"}}},
		{name: "class index under a regression loss", model: classifier, c: model.Compile{Loss: "mse"}, labels: index,
			want: []model.FieldError{{Field: "model", Reason: `takes labels of width 3, the plan's label "species" has width 1`}}},
		{name: "input width", model: `{"input_dim": 5, "layers": [{"type": "dense", "units": 1}]}`, c: model.Compile{Loss: "mse"}, labels: number,
			want: []model.FieldError{{Field: "model", Reason: "expects 5 input features, the data has 4"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := model.ParseSpec([]byte(tc.model))
			if err != nil {
				t.Fatal(err)
			}
			metrics := append([]string(nil), tc.c.Metrics...)
			got := model.Check(spec, 4, tc.c, tc.labels)
			if len(got) != len(tc.want) {
				t.Fatalf("Check = %v, want %v", got, tc.want)
			}
			for i, w := range tc.want {
				if got[i].Field != w.Field || !strings.Contains(got[i].Reason, w.Reason) {
					t.Fatalf("Check()[%d] = %v, want field %q with %q", i, got[i], w.Field, w.Reason)
				}
			}
			if strings.Join(tc.c.Metrics, ",") != strings.Join(metrics, ",") {
				t.Fatalf("Check changed the caller's metrics to %v", tc.c.Metrics)
			}
		})
	}
}

func TestFromPlan(t *testing.T) {
	plan := &messages.Plan{InputDim: 4, LabelDim: 1, Label: messages.ColumnPlan{Name: "price"},
		Spec: messages.JobSpec{
			Model:     []byte(`{"layers": [{"type": "dense", "units": 5, "activation": "relu"}, {"type": "dense", "units": 1}]}`),
			Loss:      "MSE",
			Metrics:   []string{"mae"},
			Optimizer: messages.OptimizerSpec{Name: "sgd", LearningRate: 0.1},
		}}
	spec, c, err := model.FromPlan(plan)
	if err != nil {
		t.Fatal(err)
	}
	if len(spec.Layers) != 2 || c.Loss != "MSE" || c.Optimizer.LearningRate != 0.1 {
		t.Fatalf("FromPlan = %+v, %+v", spec, c)
	}
	wide := *plan
	wide.LabelDim = 2
	_, _, err = model.FromPlan(&wide)
	if err == nil || !strings.Contains(err.Error(), `the label "price" of width 2`) ||
		!strings.Contains(err.Error(), "model: the model outputs 1 values per row but the label encodes to 2") {
		t.Fatalf("FromPlan with labels of width 2 for a one-wide model: %v", err)
	}
	var fe model.FieldErrors
	if !errors.As(err, &fe) || len(fe) != 1 || fe[0].Field != "model" {
		t.Fatalf("FromPlan error %v does not carry the field errors", err)
	}
	bad := *plan
	bad.Spec.Model = []byte(`{"layers": []}`)
	if _, _, err := model.FromPlan(&bad); err == nil || !strings.HasPrefix(err.Error(), "model: ") {
		t.Fatalf("FromPlan with no layers: %v, want a model error", err)
	}
}
