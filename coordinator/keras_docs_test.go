package coordinator

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// kerasIrisDoc is a Keras 3 model.to_json() document for the iris spec's 5 input features
// and 3 classes, with a MaxNorm constraint, an L2 regularizer, a RandomUniform initializer
// and the compile settings the spec leaves out.
const kerasIrisDoc = `{"module": "keras", "class_name": "Sequential", "config": {"name": "sequential", "layers": [
	{"module": "keras.layers", "class_name": "InputLayer", "config": {"batch_shape": [null, 5], "dtype": "float32", "name": "input_layer"}, "registered_name": null},
	{"module": "keras.layers", "class_name": "Dense", "config": {"name": "dense", "units": 8, "activation": "relu", "use_bias": true,
		"kernel_initializer": {"module": "keras.initializers", "class_name": "RandomUniform", "config": {"minval": -0.05, "maxval": 0.05, "seed": null}, "registered_name": null},
		"kernel_regularizer": {"module": "keras.regularizers", "class_name": "L2", "config": {"l2": 0.01}, "registered_name": null},
		"kernel_constraint": {"module": "keras.constraints", "class_name": "MaxNorm", "config": {"max_value": 3.0, "axis": 0}, "registered_name": null}}, "registered_name": null},
	{"module": "keras.layers", "class_name": "Dense", "config": {"name": "dense_1", "units": 3, "activation": "softmax"}, "registered_name": null}]},
	"registered_name": null,
	"compile_config": {"optimizer": {"module": "keras.optimizers", "class_name": "Adam", "config": {"learning_rate": 0.01}, "registered_name": null},
		"loss": "categorical_crossentropy", "metrics": ["accuracy"]}}`

// TestSubmitKerasDocuments submits Keras documents as people publish them: accepted
// (with the loss from the document, the model as the string to_json() returns), or a 400
// naming the field, its reason prefixed once.
func TestSubmitKerasDocuments(t *testing.T) {
	e := newEnv(t)
	irisTable(t, e)
	r := start(t, e, Config{})
	ctx := context.Background()

	asString, _ := json.Marshal(kerasIrisDoc)
	if _, err := r.cl.Submit(ctx, specJSON(t, func(m map[string]any) {
		m["model"] = json.RawMessage(asString)
		delete(m, "loss")
	})); err != nil {
		t.Fatalf("a to_json() string with its compile_config: %v", err)
	}

	model := func(doc string) func(m map[string]any) {
		return func(m map[string]any) { m["model"] = json.RawMessage(doc) }
	}
	tests := []struct {
		name, field, want string
		mutate            func(m map[string]any)
	}{
		{"no loss anywhere", "loss", "neither the spec nor the model document", func(m map[string]any) { delete(m, "loss") }},
		{"graph model", "model", "TF.js graph model", model(`{"format": "graph-model", "modelTopology": {"node": [], "versions": {"producer": 1}}, "weightsManifest": []}`)},
		{"conv2d", "model", `layers[1] "conv2d": unsupported layer class "Conv2D"`, model(strings.Replace(strings.Replace(kerasIrisDoc,
			`"class_name": "Dense", "config": {"name": "dense",`, `"class_name": "Conv2D", "config": {"name": "conv2d", "filters": 8,`, 1),
			`"batch_shape": [null, 5]`, `"batch_shape": [null, 28, 28, 1]`, 1))},
		{"unknown initializer", "model", `kernel_initializer: unsupported initializer "Orthogonal"`,
			model(strings.Replace(kerasIrisDoc, `"RandomUniform"`, `"Orthogonal"`, 1))},
		{"negative regularizer", "model", "regularizer factors must be finite and not negative",
			model(strings.Replace(kerasIrisDoc, `"l2": 0.01`, `"l2": -0.01`, 1))},
		{"input width", "model", "the model expects 4 input features, the data has 5",
			model(strings.Replace(kerasIrisDoc, `"batch_shape": [null, 5]`, `"batch_shape": [null, 4]`, 1))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.cl.Submit(ctx, specJSON(t, tt.mutate))
			ae := apiErr(t, err)
			if ae.Status != http.StatusBadRequest || ae.Field != tt.field || !strings.Contains(ae.Message, tt.want) {
				t.Fatalf("got %v, want a 400 on %s with %q", err, tt.field, tt.want)
			}
			if strings.Contains(ae.Error(), "model: model:") || strings.HasPrefix(ae.Message, "model: ") {
				t.Fatalf("doubled prefix in %q", ae.Error())
			}
		})
	}
}
