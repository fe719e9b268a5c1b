package model

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseSpecLayerList(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		wantErr string
		check   func(t *testing.T, s *Spec)
	}{
		{name: "defaults and names", doc: `{"layers":[{"type":"dense","units":64,"activation":"relu","name":"d1"},{"type":"dropout","rate":0.1},{"type":"dense","units":3},{"type":"dense","units":1,"activation":"silu"}]}`,
			check: func(t *testing.T, s *Spec) {
				want := []string{"d1", "dropout", "dense", "dense_1"}
				for i, l := range s.Layers {
					if l.Name != want[i] {
						t.Errorf("layer %d named %q, want %q", i, l.Name, want[i])
					}
				}
				if !s.Layers[0].UseBias || s.Layers[2].Activation != ActLinear || s.Layers[3].Activation != ActSwish {
					t.Errorf("defaults not applied: %+v", s.Layers)
				}
				if s.InputDim != 0 || s.Name != "sequential" {
					t.Errorf("input %d name %q", s.InputDim, s.Name)
				}
			}},
		{name: "input dim, batch norm and leaky relu", doc: `{"name":"m","input_dim":7,"layers":[{"type":"dense","units":4,"use_bias":false},{"type":"batchnorm","center":false},{"type":"leaky_relu"},{"type":"activation","activation":"gelu"},{"type":"dense","units":1}]}`,
			check: func(t *testing.T, s *Spec) {
				if s.InputDim != 7 || s.Name != "m" || s.Layers[0].UseBias {
					t.Errorf("got %+v", s)
				}
				bn := s.Layers[1]
				if bn.Type != LayerBatchNorm || bn.Center || !bn.Scale || bn.Momentum != 0.99 || bn.Epsilon != 1e-3 {
					t.Errorf("batch norm %+v", bn)
				}
				if s.Layers[2].Alpha != 0.3 {
					t.Errorf("leaky relu alpha %v, want Keras's 0.3", s.Layers[2].Alpha)
				}
			}},
		{name: "unknown type", doc: `{"layers":[{"type":"dense","units":2},{"type":"conv2d","name":"c"}]}`, wantErr: `layers[1] "c": unsupported layer type "conv2d"`},
		{name: "bad activation", doc: `{"layers":[{"type":"dense","units":2,"activation":"hard_sigmoid","name":"h"}]}`, wantErr: `layers[0] "h": unsupported activation "hard_sigmoid"`},
		{name: "unknown field", doc: `{"layers":[{"type":"dense","units":2,"kernel_size":3}]}`, wantErr: `layers[0]: invalid layer`},
		{name: "dropout without rate", doc: `{"layers":[{"type":"dense","units":2},{"type":"dropout"}]}`, wantErr: `layers[1]: dropout needs "rate"`},
		{name: "dropout rate 1", doc: `{"layers":[{"type":"dense","units":2},{"type":"dropout","rate":1}]}`, wantErr: `layers[1] "dropout": dropout rate must be in [0, 1)`},
		{name: "duplicate names", doc: `{"layers":[{"type":"dense","units":2,"name":"a"},{"type":"dense","units":2,"name":"a"}]}`, wantErr: `layers[1] "a": duplicate layer name`},
		{name: "zero units", doc: `{"layers":[{"type":"dense","units":0}]}`, wantErr: `dense units must be positive`},
		{name: "no dense layer", doc: `{"layers":[{"type":"dropout","rate":0.5}]}`, wantErr: `no dense layer`},
		{name: "empty", doc: ``, wantErr: `empty model document`},
		{name: "not an object", doc: `[1,2]`, wantErr: `invalid JSON`},
		{name: "neither form", doc: `{"foo":1}`, wantErr: `expected {"layers": [...]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSpec([]byte(tt.doc))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, s)
		})
	}
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "keras", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Every Keras form of the same model parses to the same layers.
func TestParseSpecKerasFixtures(t *testing.T) {
	var first []LayerSpec
	for _, f := range []string{"keras2_legacy_to_json.json", "tfkeras213plus_to_json.json", "keras3_to_json.json"} {
		t.Run(f, func(t *testing.T) {
			s, err := ParseSpec(readFixture(t, f))
			if err != nil {
				t.Fatal(err)
			}
			if s.InputDim != 8 || len(s.Layers) != 4 {
				t.Fatalf("input %d, %d layers", s.InputDim, len(s.Layers))
			}
			types := []string{LayerDense, LayerDropout, LayerBatchNorm, LayerDense}
			for i, l := range s.Layers {
				if l.Type != types[i] {
					t.Errorf("layer %d is %s, want %s", i, l.Type, types[i])
				}
			}
			if l := s.Layers[0]; l.Units != 16 || l.Activation != ActReLU || l.Name != "dense" || l.KernelInitializer.Kind != "glorot_uniform" {
				t.Errorf("first layer %+v", l)
			}
			if l := s.Layers[1]; l.Rate != 0.2 {
				t.Errorf("dropout %+v", l)
			}
			if l := s.Layers[2]; l.Momentum != 0.99 || l.Epsilon != 0.001 || !l.Center || !l.Scale {
				t.Errorf("batch norm %+v", l)
			}
			if l := s.Layers[3]; l.Units != 1 || l.Activation != ActSigmoid {
				t.Errorf("last layer %+v", l)
			}
			if f == "keras3_to_json.json" {
				c := s.Compile
				if c == nil || c.Loss != LossBinaryCrossentropy || c.Optimizer.Name != OptAdam ||
					!reflect.DeepEqual(c.Metrics, []string{"accuracy"}) || c.Optimizer.Epsilon != 1e-7 {
					t.Errorf("compile_config %+v", c)
				}
			} else if s.Compile != nil {
				t.Errorf("unexpected compile config %+v", s.Compile)
			}
			if first == nil {
				first = s.Layers
				return
			}
			for i := range first {
				a, b := first[i], s.Layers[i]
				a.KernelInitializer, b.KernelInitializer, a.BiasInitializer, b.BiasInitializer = nil, nil, nil, nil
				if !reflect.DeepEqual(a, b) {
					t.Errorf("layer %d: %+v, the first form gave %+v", i, b, a)
				}
			}
		})
	}
}

// replaceInFixture edits the Keras 3 fixture's text to produce documents with one problem each.
func replaceInFixture(t *testing.T, old, new string) string {
	t.Helper()
	s := string(readFixture(t, "keras3_to_json.json"))
	if !strings.Contains(s, old) {
		t.Fatalf("fixture lacks %q", old)
	}
	return strings.Replace(s, old, new, 1)
}

func TestParseSpecKerasErrors(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		wantErr string
	}{
		{name: "unsupported class",
			doc:     replaceInFixture(t, `"class_name": "Dropout", "config": {"name": "dropout"`, `"class_name": "Conv2D", "config": {"name": "conv"`),
			wantErr: `layers[2] "conv": unsupported layer class "Conv2D"`},
		{name: "unsupported activation",
			doc:     replaceInFixture(t, `"activation": "sigmoid"`, `"activation": "hard_sigmoid"`),
			wantErr: `layers[4] "dense_1": unsupported activation "hard_sigmoid"`},
		{name: "regularizer class",
			doc:     replaceInFixture(t, `"kernel_regularizer": null`, `"kernel_regularizer": {"class_name": "OrthogonalRegularizer", "config": {"factor": 0.01}}`),
			wantErr: `layers[1] "dense": kernel_regularizer: unsupported regularizer "OrthogonalRegularizer"`},
		{name: "regularizer option",
			doc:     replaceInFixture(t, `"kernel_regularizer": null`, `"kernel_regularizer": {"class_name": "L2", "config": {"l2": 0.01, "mode": "rows"}}`),
			wantErr: `layers[1] "dense": kernel_regularizer: regularizer L2: unsupported option "mode"`},
		{name: "negative regularizer",
			doc:     replaceInFixture(t, `"bias_regularizer": null`, `"bias_regularizer": {"class_name": "L1", "config": {"l1": -1}}`),
			wantErr: `layers[1] "dense": bias_regularizer: regularizer factors must be finite and not negative`},
		{name: "constraint class",
			doc:     replaceInFixture(t, `"kernel_constraint": null`, `"kernel_constraint": {"class_name": "RadialConstraint", "config": {}}`),
			wantErr: `layers[1] "dense": kernel_constraint: unsupported constraint "RadialConstraint"`},
		{name: "constraint axes",
			doc:     replaceInFixture(t, `"kernel_constraint": null`, `"kernel_constraint": {"class_name": "MaxNorm", "config": {"max_value": 3, "axis": [0, 1]}}`),
			wantErr: `layers[1] "dense": kernel_constraint: constraint MaxNorm: only a single axis is supported`},
		{name: "constraint axis",
			doc:     replaceInFixture(t, `"kernel_constraint": null`, `"kernel_constraint": {"class_name": "UnitNorm", "config": {"axis": 2}}`),
			wantErr: `layers[1] "dense": kernel_constraint: unit_norm constraint: axis 2 is not one of 0, 1, -1`},
		{name: "initializer option",
			doc:     replaceInFixture(t, `"class_name": "GlorotUniform", "config": {"seed": null}`, `"class_name": "RandomUniform", "config": {"minval": -0.1, "maxval": 0.1, "max": 1, "seed": null}`),
			wantErr: `layers[1] "dense": kernel_initializer: initializer RandomUniform: unsupported option "max"`},
		{name: "mixed precision",
			doc:     replaceInFixture(t, `"units": 16, "activation": "relu"`, `"units": 16, "activation": "relu", "dtype": "mixed_float16"`),
			wantErr: `unsupported dtype "mixed_float16"`},
		{name: "batch norm axis",
			doc:     replaceInFixture(t, `"axis": -1`, `"axis": 0`),
			wantErr: `layers[3] "batch_normalization": unsupported option "axis" = 0`},
		{name: "frozen layer",
			doc:     replaceInFixture(t, `"name": "dense", "trainable": true`, `"name": "dense", "trainable": false`),
			wantErr: `layers[1] "dense": trainable=false is not supported`},
		{name: "image input",
			doc:     replaceInFixture(t, `"batch_shape": [null, 8]`, `"batch_shape": [null, 28, 28]`),
			wantErr: `layers[0] "input_layer": batch_shape: input shape must be [null, features]`},
		{name: "functional model",
			doc:     replaceInFixture(t, `"class_name": "Sequential"`, `"class_name": "Functional"`),
			wantErr: `unsupported model class "Functional": only Sequential models are supported`},
		{name: "initializer",
			doc:     replaceInFixture(t, `"class_name": "GlorotUniform"`, `"class_name": "Orthogonal"`),
			wantErr: `layers[1] "dense": kernel_initializer: unsupported initializer "Orthogonal"`},
		{name: "optimizer",
			doc:     replaceInFixture(t, `"class_name": "Adam"`, `"class_name": "Adagrad"`),
			wantErr: `compile_config: optimizer: unsupported optimizer "Adagrad"`},
		{name: "amsgrad",
			doc:     replaceInFixture(t, `"amsgrad": false`, `"amsgrad": true`),
			wantErr: `unsupported option "amsgrad"`},
		{name: "loss",
			doc:     replaceInFixture(t, `"loss": "binary_crossentropy"`, `"loss": "kl_divergence"`),
			wantErr: `compile_config: unsupported loss "kl_divergence"`},
		{name: "weighted metrics",
			doc:     replaceInFixture(t, `"weighted_metrics": null`, `"weighted_metrics": ["accuracy"]`),
			wantErr: `compile_config: weighted_metrics are not supported`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseSpec([]byte(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestParseSpecKerasExtras(t *testing.T) {
	tests := []struct {
		name  string
		doc   string
		check func(t *testing.T, s *Spec)
	}{
		{name: "keras 3 layer forms", doc: `{"class_name":"Sequential","config":{"name":"s","layers":[
			{"class_name":"InputLayer","config":{"batch_shape":[null,3],"name":"in"}},
			{"class_name":"Dense","config":{"name":"d","units":4,"activation":{"module":"keras.activations","class_name":"function","config":"tanh","registered_name":"function"}}},
			{"class_name":"LeakyReLU","config":{"name":"l","negative_slope":0.1}},
			{"class_name":"ReLU","config":{"name":"r","max_value":null,"negative_slope":0.0,"threshold":0.0}},
			{"class_name":"Softmax","config":{"name":"sm","axis":-1}},
			{"class_name":"Dense","config":{"name":"o","units":2,"kernel_initializer":{"class_name":"VarianceScaling","config":{"scale":2.0,"mode":"fan_in","distribution":"uniform"}}}}]}}`,
			check: func(t *testing.T, s *Spec) {
				if s.InputDim != 3 || len(s.Layers) != 5 {
					t.Fatalf("%+v", s)
				}
				if s.Layers[0].Activation != ActTanh || s.Layers[1].Alpha != 0.1 || s.Layers[2].Activation != ActReLU || s.Layers[3].Activation != ActSoftmax {
					t.Errorf("%+v", s.Layers)
				}
				if in := s.Layers[4].KernelInitializer; in.Kind != "variance_scaling" || in.Scale != 2 || in.Mode != "fan_in" {
					t.Errorf("initializer %+v", in)
				}
			}},
		{name: "tfjs model.json wrapper with schedule", doc: `{"format":"layers-model","modelTopology":{"class_name":"Sequential","config":{"name":"m","layers":[
			{"class_name":"Dense","config":{"name":"d","units":2,"batch_input_shape":[null,5]}}]}},"weightsManifest":[]}`,
			check: func(t *testing.T, s *Spec) {
				if s.InputDim != 5 || s.Layers[0].Units != 2 {
					t.Errorf("%+v", s)
				}
			}},
		{name: "converter wrapper and compile schedule", doc: `{"model_config":{"class_name":"Sequential","config":{"layers":[
			{"class_name":"Dense","config":{"name":"d","units":2}}]},"build_config":{"input_shape":[null,4]},
			"compile_config":{"optimizer":{"class_name":"SGD","config":{"learning_rate":{"class_name":"ExponentialDecay","config":{"initial_learning_rate":0.1,"decay_steps":10,"decay_rate":0.5,"staircase":true}},"momentum":0.9,"nesterov":true}},"loss":{"class_name":"CategoricalCrossentropy","config":{"from_logits":true}},"metrics":["categorical_accuracy"]}}}`,
			check: func(t *testing.T, s *Spec) {
				if s.InputDim != 4 {
					t.Errorf("input %d", s.InputDim)
				}
				c := s.Compile
				if c == nil || c.Loss != LossCategoricalCE || !c.FromLogits || c.Optimizer.Name != OptSGD || !c.Optimizer.Nesterov ||
					c.Optimizer.Schedule == nil || c.Optimizer.Schedule.Kind != ScheduleExponential || c.Optimizer.LearningRate != 0.1 {
					t.Errorf("compile %+v", c)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSpec([]byte(tt.doc))
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, s)
		})
	}
}

func FuzzParseSpec(f *testing.F) {
	for _, name := range []string{"keras2_legacy_to_json.json", "tfkeras213plus_to_json.json", "keras3_to_json.json",
		"keras3_regularized_to_json.json", "tfkeras24_regularized_to_json.json", "tfjs_layers_model.json",
		"tfjs_converted_tfkeras.json", "tfjs_graph_model.json"} {
		f.Add(readFixture(f, name))
	}
	quoted, _ := json.Marshal(`{"class_name":"Sequential","config":{"layers":[{"class_name":"Dense","config":{"units":2,"batch_input_shape":[null,3],"kernel_constraint":"max_norm"}}]}}`)
	f.Add(quoted)
	f.Add([]byte(`{"layers":[{"type":"dense","units":3,"activation":"relu"},{"type":"batch_normalization"},{"type":"dropout","rate":0.5},{"type":"dense","units":1}],"input_dim":2}`))
	f.Add([]byte(`{"modelTopology":{"class_name":"Sequential","config":[{"class_name":"Dense","config":{"units":1,"batch_input_shape":[null,1]}}]}}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		s, err := ParseSpec(doc)
		if err != nil {
			return
		}
		// A spec that parses must build (when small enough to be cheap) and run.
		width := 0
		for _, l := range s.Layers {
			width = max(width, l.Units)
		}
		if width > 256 || s.InputDim > 256 || len(s.Layers) > 32 {
			return
		}
		m, err := New(s, max(s.InputDim, 1)*boolInt(s.InputDim == 0)+s.InputDim, Compile{}, 1)
		if err != nil {
			t.Fatalf("parsed spec does not build: %v", err)
		}
		if _, err := m.Predict(make([]float32, 2*m.InputDim()), 2); err != nil {
			t.Fatal(err)
		}
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
