package coordinator

import (
	"strings"
	"testing"

	"pgtrain/messages"
	"pgtrain/model"
)

// The TensorFlow backend's refusals are 400s at submission, naming the field; the Go
// backend takes the same specs.
func TestCheckBackendRefusesWhatTensorFlowCannotTrain(t *testing.T) {
	const base = `{"table": "t", "key": "id", "features": [{"column": "x"}], "label": "y", "loss": "binary_crossentropy"`
	tests := []struct {
		name, fields, model, wantField string
	}{
		{name: "plain", model: `{"layers": [{"type": "dense", "units": 1, "activation": "sigmoid"}]}`},
		{name: "kernel regularizer", model: `{"layers": [{"type": "dense", "units": 4}, {"type": "dense", "units": 1, "kernel_regularizer": {"l2": 0.01}}]}`,
			wantField: "model.layers[1].kernel_regularizer"},
		{name: "activity regularizer", model: `{"layers": [{"type": "dense", "units": 1, "activity_regularizer": {"l1": 0.01}}]}`,
			wantField: "model.layers[0].activity_regularizer"},
		{name: "bias constraint", model: `{"layers": [{"type": "dense", "units": 1, "bias_constraint": {"kind": "non_neg"}}]}`,
			wantField: "model.layers[0].bias_constraint"},
		{name: "class weights", fields: `, "class_weight": {"0": 1, "1": 2}`, model: `{"layers": [{"type": "dense", "units": 1}]}`, wantField: "class_weight"},
		{name: "sample weights", fields: `, "sample_weight_column": "w"`, model: `{"layers": [{"type": "dense", "units": 1}]}`, wantField: "sample_weight_column"},
		{name: "plateau", fields: `, "reduce_lr_on_plateau": {"monitor": "loss"}`, model: `{"layers": [{"type": "dense", "units": 1}]}`, wantField: "reduce_lr_on_plateau"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, backend := range []string{"go", "tensorflow"} {
				spec, err := messages.ParseJobSpec([]byte(base + tt.fields + `, "backend": "` + backend + `", "model": ` + tt.model + `}`))
				if err != nil {
					t.Fatal(err)
				}
				ms, err := model.ParseSpec(spec.Model)
				if err != nil {
					t.Fatal(err)
				}
				err = checkBackend(spec, ms)
				if backend == "go" || tt.wantField == "" {
					if err != nil {
						t.Fatalf("backend %s refused it: %v", backend, err)
					}
					continue
				}
				fe, ok := err.(*messages.FieldError)
				if !ok || fe.Field != tt.wantField || !strings.Contains(fe.Reason, "tensorflow backend") {
					t.Fatalf("backend %s: %v, want a field error on %s", backend, err, tt.wantField)
				}
			}
		})
	}
}
