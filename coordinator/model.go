package coordinator

import (
	"fmt"
	"strings"

	"pgtrain/messages"
	"pgtrain/model"
	"pgtrain/trainer/compile"
)

// checkModel builds the job's model on the planned input width, so a spec the trainer could
// not train is refused at submission, naming the field at fault.
func checkModel(p *messages.Plan) error {
	spec := p.Spec
	ms, err := model.ParseSpec(spec.Model)
	if err != nil {
		return &messages.FieldError{Field: "model", Reason: err.Error()}
	}
	comp := model.Compile{Loss: spec.Loss, FromLogits: spec.FromLogits, Optimizer: model.OptimizerConfig{Name: "adam"}}
	if err := comp.Validate(); err != nil {
		field := "loss"
		if spec.FromLogits && strings.Contains(err.Error(), "from_logits") {
			field = "from_logits"
		}
		return &messages.FieldError{Field: field, Reason: err.Error()}
	}
	comp.Metrics = spec.Metrics
	if err := comp.Validate(); err != nil {
		return &messages.FieldError{Field: "metrics", Reason: err.Error()}
	}
	comp.Optimizer = compile.Optimizer(spec.Optimizer)
	if err := comp.Validate(); err != nil {
		return &messages.FieldError{Field: "optimizer", Reason: err.Error()}
	}
	loss := strings.ReplaceAll(strings.ToLower(spec.Loss), "_", "")
	switch {
	case loss == "sparsecategoricalcrossentropy" && spec.Label.Encode != messages.EncodeIndex:
		return &messages.FieldError{Field: "loss", Reason: `sparse_categorical_crossentropy needs the label encoded as "index"`}
	case loss == "categoricalcrossentropy" && spec.Label.Encode != messages.EncodeOneHot:
		return &messages.FieldError{Field: "loss", Reason: `categorical_crossentropy needs the label encoded as "onehot"`}
	}
	m, err := model.New(ms, p.InputDim, comp, spec.Seed)
	if err != nil {
		return &messages.FieldError{Field: "model", Reason: err.Error()}
	}
	// A sparse label is one class index per row, but the model scores every class.
	want, what := p.LabelDim, "the label encodes to"
	if spec.Label.Encode == messages.EncodeIndex {
		want, what = len(p.Label.Vocabulary), "the label has classes:"
	}
	if m.OutputDim() != want {
		return &messages.FieldError{Field: "model", Reason: fmt.Sprintf("the model outputs %d values per row but %s %d", m.OutputDim(), what, want)}
	}
	return nil
}
