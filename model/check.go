package model

import (
	"fmt"
	"strings"

	"pgtrain/messages"
)

// FieldError is a problem with one field of a job spec: Field is its path in the spec
// ("loss", "from_logits", "metrics", "optimizer", "model"), Reason says what is wrong.
type FieldError struct {
	Field  string
	Reason string
}

func (e FieldError) Error() string { return e.Field + ": " + e.Reason }

// Labels is the label a model trains on, as the plan encodes it.
type Labels struct {
	Name string
	// Encode is messages.EncodeNone for a number, EncodeOneHot or EncodeIndex for a class.
	Encode string
	// Width is the number of floats per label row after encoding.
	Width int
	// Classes is the number of classes of a categorical label.
	Classes int
}

// PlanLabels is the label of a plan.
func PlanLabels(p *messages.Plan) Labels {
	return Labels{Name: p.Label.Name, Encode: p.Spec.Label.Encode, Width: p.LabelDim, Classes: len(p.Label.Vocabulary)}
}

// CompileOf maps a job spec's optimizer, loss and metrics onto the engine's settings. Every
// backend, and the coordinator's check at submission, goes through it, so a spec means one
// thing. What the spec leaves out (no loss, no metrics, no optimizer) comes from the model
// document's compile settings (Keras 3 compile_config, tf.keras 2 training_config, TF.js
// trainingConfig) when it has them.
func CompileOf(s messages.JobSpec) Compile {
	o := s.Optimizer
	c := Compile{
		Optimizer: OptimizerConfig{
			Name: o.Name, LearningRate: o.LearningRate, Momentum: o.Momentum, Nesterov: o.Nesterov,
			Beta1: o.Beta1, Beta2: o.Beta2, Epsilon: o.Epsilon, Rho: o.Rho,
			WeightDecay: o.WeightDecay, ClipNorm: o.ClipNorm, Schedule: ScheduleOf(o.Schedule),
		},
		Loss:       s.Loss,
		FromLogits: s.FromLogits,
		Metrics:    s.Metrics,
	}
	if s.Loss != "" && len(s.Metrics) > 0 && o != (messages.OptimizerSpec{}) {
		return c
	}
	doc, err := ParseSpec(s.Model)
	if err != nil || doc.Compile == nil {
		return c // Check reports a document that does not parse
	}
	dc := doc.Compile
	if s.Loss == "" {
		c.Loss, c.HuberDelta = dc.Loss, dc.HuberDelta
		c.FromLogits = s.FromLogits || dc.FromLogits
	}
	if len(s.Metrics) == 0 {
		c.Metrics = append([]string(nil), dc.Metrics...)
	}
	if o == (messages.OptimizerSpec{}) {
		c.Optimizer = dc.Optimizer
		if dc.Optimizer.Schedule != nil {
			sch := *dc.Optimizer.Schedule
			c.Optimizer.Schedule = &sch
		}
	}
	return c
}

// FieldErrors is every problem Check found.
type FieldErrors []FieldError

func (es FieldErrors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "; ")
}

// FromPlan reads the model document and compile settings of a plan and checks them as the
// coordinator did at submission; a backend builds the job's model from what it returns.
func FromPlan(p *messages.Plan) (*Spec, Compile, error) {
	spec, err := ParseSpec(p.Spec.Model)
	if err != nil {
		return nil, Compile{}, fmt.Errorf("model: %w", err)
	}
	if v := p.Variant; v != nil {
		if spec, err = spec.WithVariant(v.Overrides); err != nil {
			return nil, Compile{}, fmt.Errorf("sweep variant %d: %w", v.Index, err)
		}
	}
	c := CompileOf(p.Spec)
	if errs := Check(spec, p.InputDim, c, PlanLabels(p)); len(errs) > 0 {
		return nil, Compile{}, fmt.Errorf("checking the model for %d input features and the label %q of width %d: %w",
			p.InputDim, p.Label.Name, p.LabelDim, FieldErrors(errs))
	}
	return spec, c, nil
}

// Check builds the model of spec on inputDim features with the compile settings c, and
// checks that it trains on labels: the problems come with the job spec field at fault, so the
// coordinator refuses at submission what a trainer could not train. The compile settings are
// checked first; the model is built only when they are valid.
func Check(spec *Spec, inputDim int, c Compile, labels Labels) []FieldError {
	loss := c.Loss
	errs := c.check()
	// c.Loss is canonical unless the loss was refused, and then it names no categorical loss.
	if err := labels.checkLoss(c.Loss); err != nil {
		errs = append(errs, FieldError{Field: "loss", Reason: err.Error()})
	}
	if len(errs) > 0 {
		return errs
	}
	m, err := New(spec, inputDim, c, 0)
	if err != nil {
		return []FieldError{{Field: "model", Reason: err.Error()}}
	}
	if err := labels.checkWidth(m, loss); err != nil {
		return []FieldError{{Field: "model", Reason: err.Error()}}
	}
	return nil
}

// checkLoss refuses a categorical loss on a label encoded for the other one.
func (l Labels) checkLoss(loss string) error {
	switch {
	case loss == LossSparseCategoricalCE && l.Encode != messages.EncodeIndex:
		return fmt.Errorf(`sparse_categorical_crossentropy needs the label encoded as "index"`)
	case loss == LossCategoricalCE && l.Encode != messages.EncodeOneHot:
		return fmt.Errorf(`categorical_crossentropy needs the label encoded as "onehot"`)
	}
	return nil
}

// checkWidth compares the model's output with the label, which would otherwise fail at the
// first batch with a less helpful message.
func (l Labels) checkWidth(m *Sequential, loss string) error {
	// A sparse label is one class index per row, but the model scores every class.
	want, what := l.Width, "the label encodes to"
	if l.Encode == messages.EncodeIndex {
		want, what = l.Classes, "the label has classes:"
	}
	if m.OutputDim() != want {
		return fmt.Errorf("the model outputs %d values per row but %s %d", m.OutputDim(), what, want)
	}
	// A class index fits only the sparse loss, which takes one float per row.
	if got := m.LabelDim(); got != l.Width {
		return fmt.Errorf("the model with loss %s takes labels of width %d, the plan's label %q has width %d",
			loss, got, l.Name, l.Width)
	}
	return nil
}
