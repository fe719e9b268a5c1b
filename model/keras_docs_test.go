package model

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"pgtrain/messages"
)

func readKerasFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "keras", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestParseSpecToJSONString accepts the string model.to_json() returns, pasted as a JSON
// string, and refuses a string that holds no JSON object.
func TestParseSpecToJSONString(t *testing.T) {
	doc := readKerasFixture(t, "keras3_regularized_to_json.json")
	quoted, _ := json.Marshal(string(doc))
	a, err := ParseSpec(quoted)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ParseSpec(doc)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Layers) != len(b.Layers) || a.InputDim != 12 || a.Compile == nil || a.Compile.Loss != LossCategoricalCE {
		t.Fatalf("the quoted document parsed to %+v", a)
	}
	if _, err := ParseSpec([]byte(`"relu"`)); err == nil || !strings.Contains(err.Error(), "a string model must hold a JSON object") {
		t.Fatalf("error %v", err)
	}
}

// TestParseSpecCompileSettings reads the compile settings of each document form.
func TestParseSpecCompileSettings(t *testing.T) {
	tests := []struct {
		file, loss, metric, opt string
		lr                      float64
	}{
		{"keras3_regularized_to_json.json", LossCategoricalCE, "accuracy", OptSGD, float64(float32(0.01))},
		{"tfjs_layers_model.json", LossMSE, "mae", OptAdam, 0.01},
		{"tfjs_converted_tfkeras.json", LossSparseCategoricalCE, "accuracy", OptAdam, float64(float32(0.001))},
	}
	for _, tt := range tests {
		s, err := ParseSpec(readKerasFixture(t, tt.file))
		if err != nil {
			t.Fatalf("%s: %v", tt.file, err)
		}
		c := s.Compile
		if c == nil || c.Loss != tt.loss || len(c.Metrics) != 1 || c.Metrics[0] != tt.metric || c.Optimizer.Name != tt.opt || c.Optimizer.LearningRate != tt.lr {
			t.Errorf("%s: compile %+v, want %s, [%s], %s lr %v", tt.file, c, tt.loss, tt.metric, tt.opt, tt.lr)
		}
	}
	s, _ := ParseSpec(readKerasFixture(t, "keras3_regularized_to_json.json"))
	if o := s.Compile.Optimizer; o.Momentum != 0.9 || !o.Nesterov {
		t.Errorf("SGD options lost: %+v", o)
	}
	// The legacy learning-rate decay of tf.keras 2 cannot be honoured: refused.
	doc := strings.Replace(string(readKerasFixture(t, "tfjs_converted_tfkeras.json")), `"name": "Adam",`, `"name": "Adam", "decay": 0.01,`, 1)
	if _, err := ParseSpec([]byte(doc)); err == nil || !strings.Contains(err.Error(), "legacy learning rate decay") {
		t.Errorf("decay: error %v", err)
	}
}

// TestCompileOfDocument takes what the job spec leaves out from the model document, and
// keeps what it gives.
func TestCompileOfDocument(t *testing.T) {
	doc := readKerasFixture(t, "keras3_regularized_to_json.json")
	c := CompileOf(messages.JobSpec{Model: doc})
	if c.Loss != LossCategoricalCE || len(c.Metrics) != 1 || c.Optimizer.Name != OptSGD || c.Optimizer.Momentum != 0.9 {
		t.Fatalf("compile %+v, want the document's", c)
	}
	c = CompileOf(messages.JobSpec{Model: doc, Loss: "mse", Optimizer: messages.OptimizerSpec{Name: "rmsprop"}})
	if c.Loss != "mse" || c.Optimizer.Name != "rmsprop" || len(c.Metrics) != 1 || c.Metrics[0] != "accuracy" {
		t.Fatalf("compile %+v, want the spec's loss and optimizer, the document's metrics", c)
	}
	if c := CompileOf(messages.JobSpec{Model: json.RawMessage(`{"layers":[{"type":"dense","units":1}]}`)}); c.Loss != "" {
		t.Fatalf("a layer list has no loss, got %q", c.Loss)
	}
}

// TestParseSpecGraphModel says what a TF.js graph model is and what to give instead.
func TestParseSpecGraphModel(t *testing.T) {
	_, err := ParseSpec(readKerasFixture(t, "tfjs_graph_model.json"))
	if err == nil || !strings.Contains(err.Error(), "TF.js graph model") || !strings.Contains(err.Error(), "to_json()") ||
		!strings.Contains(err.Error(), "tfjs_layers_model") {
		t.Fatalf("error %v", err)
	}
	if strings.HasPrefix(err.Error(), "model: ") {
		t.Fatalf("error %q carries a prefix the caller adds", err)
	}
}

// TestParseSpecConv2DNamedFirst names the unsupported layer of an image model before its
// input shape, which only that layer would explain.
func TestParseSpecConv2DNamedFirst(t *testing.T) {
	doc := `{"class_name": "Sequential", "config": {"name": "cnn", "layers": [
		{"class_name": "InputLayer", "config": {"batch_input_shape": [null, 28, 28, 1], "dtype": "float32", "name": "conv2d_input"}},
		{"class_name": "Conv2D", "config": {"name": "conv2d", "batch_input_shape": [null, 28, 28, 1], "filters": 32, "kernel_size": [3, 3], "activation": "relu"}},
		{"class_name": "Flatten", "config": {"name": "flatten"}},
		{"class_name": "Dense", "config": {"name": "dense", "units": 10, "activation": "softmax"}}],
		"build_input_shape": [null, 28, 28, 1]}, "keras_version": "2.8.0", "backend": "tensorflow"}`
	_, err := ParseSpec([]byte(doc))
	if err == nil || !strings.HasPrefix(err.Error(), `layers[1] "conv2d": unsupported layer class "Conv2D"`) {
		t.Fatalf("error %v", err)
	}
}

// TestParseSpecDropoutSeed refuses a dropout seed rather than dropping it.
func TestParseSpecDropoutSeed(t *testing.T) {
	doc := strings.Replace(string(readKerasFixture(t, "tfkeras24_regularized_to_json.json")), `"rate": 0.5, "noise_shape": null, "seed": null`, `"rate": 0.5, "noise_shape": null, "seed": 42`, 1)
	if _, err := ParseSpec([]byte(doc)); err == nil || !strings.Contains(err.Error(), `layers[2] "dropout_3": option "seed" = 42`) {
		t.Fatalf("error %v", err)
	}
}

// TestNewErrorsUnprefixed: errors of New reach the job spec's "model" field once prefixed.
func TestNewErrorsUnprefixed(t *testing.T) {
	s, err := ParseSpec([]byte(`{"layers":[{"type":"dense","units":1}]}`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(s, 0, Compile{}, 0)
	if err == nil || strings.HasPrefix(err.Error(), "model: ") {
		t.Fatalf("error %v", err)
	}
	fe := messages.FieldError{Field: "model", Reason: err.Error()}
	if strings.Count(fe.Error(), "model: ") != 1 {
		t.Fatalf("%q", fe.Error())
	}
}
