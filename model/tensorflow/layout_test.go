package tensorflow

import (
	"errors"
	"slices"
	"testing"

	"pgtrain/model"
)

func TestLayoutMatchesGoEngine(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		input   int
		wantErr bool
	}{
		{name: "dense stack", input: 5, doc: `{"layers": [
			{"type": "dense", "units": 4, "activation": "relu"},
			{"type": "dense", "units": 1, "use_bias": false}]}`},
		{name: "every layer type", input: 3, doc: `{"layers": [
			{"type": "dense", "units": 6, "activation": "gelu", "name": "first"},
			{"type": "batch_normalization"},
			{"type": "dropout", "rate": 0.2},
			{"type": "activation", "activation": "tanh"},
			{"type": "leaky_relu", "alpha": 0.1},
			{"type": "batch_normalization", "center": false},
			{"type": "batch_normalization", "scale": false, "center": false},
			{"type": "dense", "units": 2, "activation": "softmax"}]}`},
		{name: "keras document", input: 0, doc: `{"class_name": "Sequential", "config": {"name": "k", "layers": [
			{"class_name": "Dense", "config": {"name": "d", "units": 3, "batch_input_shape": [null, 7]}},
			{"class_name": "BatchNormalization", "config": {"name": "bn"}},
			{"class_name": "Dense", "config": {"name": "out", "units": 1, "activation": "sigmoid"}}]}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := model.ParseSpec([]byte(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			ref, err := model.New(spec, tc.input, model.Compile{}, 1)
			if err != nil {
				t.Fatal(err)
			}
			vs, err := layout(ref.Spec(), ref.InputDim())
			if err != nil {
				t.Fatal(err)
			}
			if err := checkLayout(vs, ref.Weights()); err != nil {
				t.Fatal(err)
			}
			trainable, frozen := 0, 0
			for _, v := range vs {
				if v.Trainable {
					trainable += v.size()
				} else {
					frozen += v.size()
				}
			}
			wt, wf := ref.ParamCount()
			if trainable != wt || frozen != wf {
				t.Fatalf("layout has %d trainable and %d other values, the Go engine %d and %d", trainable, frozen, wt, wf)
			}
		})
	}
}

func TestCheckLayoutRefusesDifferences(t *testing.T) {
	vs := []varSpec{{Name: "d/kernel", Shape: []int{2, 3}}, {Name: "d/bias", Shape: []int{3}}}
	tests := []struct {
		name string
		ws   []model.Tensor
	}{
		{name: "missing tensor", ws: []model.Tensor{{Name: "d/kernel", Shape: []int{2, 3}}}},
		{name: "other name", ws: []model.Tensor{{Name: "d/kernel", Shape: []int{2, 3}}, {Name: "e/bias", Shape: []int{3}}}},
		{name: "other shape", ws: []model.Tensor{{Name: "d/kernel", Shape: []int{3, 2}}, {Name: "d/bias", Shape: []int{3}}}},
		{name: "other order", ws: []model.Tensor{{Name: "d/bias", Shape: []int{3}}, {Name: "d/kernel", Shape: []int{2, 3}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := checkLayout(vs, tc.ws); err == nil {
				t.Fatal("checkLayout accepted a different set of weights")
			}
		})
	}
}

func TestSlotNames(t *testing.T) {
	tests := []struct {
		opt  model.OptimizerConfig
		want []string
	}{
		{opt: model.OptimizerConfig{Name: model.OptSGD}, want: nil},
		{opt: model.OptimizerConfig{Name: model.OptSGD, Momentum: 0.9}, want: []string{"momentum"}},
		{opt: model.OptimizerConfig{Name: model.OptAdam}, want: []string{"m", "v"}},
		{opt: model.OptimizerConfig{Name: model.OptAdamW}, want: []string{"m", "v"}},
		{opt: model.OptimizerConfig{Name: model.OptRMSprop}, want: []string{"ms", "mom"}},
	}
	for _, tc := range tests {
		if got := slotNames(tc.opt); !slices.Equal(got, tc.want) {
			t.Errorf("slotNames(%s, momentum %v) = %v, want %v", tc.opt.Name, tc.opt.Momentum, got, tc.want)
		}
	}
}

// The graph has no regularization losses nor constraint projections: a model with either is
// refused, not trained without them.
func TestLayoutRefusesRegularizersAndConstraints(t *testing.T) {
	for _, doc := range []string{
		`{"layers": [{"type": "dense", "units": 2, "kernel_regularizer": {"l2": 0.01}}]}`,
		`{"layers": [{"type": "dense", "units": 2, "activity_regularizer": {"l1": 0.01}}]}`,
		`{"layers": [{"type": "dense", "units": 2, "bias_constraint": {"kind": "non_neg"}}]}`,
	} {
		spec, err := model.ParseSpec([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := layout(spec, 3); err == nil || !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: error %v, want ErrUnsupported", doc, err)
		}
	}
}
