package model

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestParamCountMatchesTheBuiltModel(t *testing.T) {
	for _, doc := range []string{
		`{"layers": [{"type": "dense", "units": 1}]}`,
		`{"layers": [{"type": "dense", "units": 16, "activation": "relu"}, {"type": "batch_normalization"},
		  {"type": "dropout", "rate": 0.2}, {"type": "dense", "units": 8, "use_bias": false}, {"type": "leaky_relu"},
		  {"type": "dense", "units": 3, "activation": "softmax"}]}`,
	} {
		s, err := ParseSpec([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		m, err := New(s, 7, Compile{Loss: LossMSE}, 0)
		if err != nil {
			t.Fatal(err)
		}
		tr, nt := m.ParamCount()
		if got := s.ParamCount(7); got != int64(tr+nt) {
			t.Errorf("%s: spec counts %d parameters, the model has %d", doc, got, tr+nt)
		}
	}
}

func TestCheckSizeRefusesBeforeAllocating(t *testing.T) {
	limits := SizeLimits{Layers: 4, Units: 1024, Params: 1_000_000}
	tests := []struct {
		name     string
		doc      string
		inputDim int
		want     string // "" for no error
	}{
		{"small", `{"layers": [{"type": "dense", "units": 64}, {"type": "dense", "units": 1}]}`, 100, ""},
		{"a billion units", `{"layers": [{"type": "dense", "units": 1000000000}]}`, 10, `layers[0] "dense": 1000000000 units, over this coordinator's limit of 1024`},
		{"too many layers", `{"layers": [{"type": "dense", "units": 1}, {"type": "dense", "units": 1}, {"type": "dense", "units": 1},
		  {"type": "dense", "units": 1}, {"type": "dense", "units": 1}]}`, 10, "5 layers, over this coordinator's limit of 4"},
		{"too many parameters", `{"layers": [{"type": "dense", "units": 1024}, {"type": "dense", "units": 1024}]}`, 10,
			"1060864 parameters on 10 input features, over this coordinator's limit of 1000000"},
		{"parameters unknown before planning", `{"layers": [{"type": "dense", "units": 1024}, {"type": "dense", "units": 1024}]}`, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSpec([]byte(tt.doc))
			if err != nil {
				t.Fatal(err)
			}
			err = s.CheckSize(tt.inputDim, limits)
			var se *SpecError
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("CheckSize: %v", err)
			case tt.want != "" && (!errors.As(err, &se) || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("CheckSize: %v, want a SpecError with %q", err, tt.want)
			}
		})
	}
}

func TestParamCountSaturates(t *testing.T) {
	s := &Spec{Layers: []LayerSpec{{Type: LayerDense, Units: math.MaxInt, UseBias: true}, {Type: LayerDense, Units: math.MaxInt}}}
	if got := s.ParamCount(math.MaxInt); got != math.MaxInt64 {
		t.Fatalf("ParamCount = %d, want math.MaxInt64", got)
	}
}
