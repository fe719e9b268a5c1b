package trainer

import (
	"fmt"

	"pgtrain/messages"
	"pgtrain/model"
	"pgtrain/trainer/compile"
)

func init() { RegisterBackend("go", newGoModel) }

// newGoModel builds the pure-Go engine from the job spec: its model document, optimizer,
// loss, metrics and seed, for the plan's input width.
func newGoModel(plan *messages.Plan) (Model, error) {
	spec, err := model.ParseSpec(plan.Spec.Model)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	m, err := model.New(spec, plan.InputDim, compile.Config(plan.Spec), plan.Spec.Seed)
	if err != nil {
		return nil, err
	}
	// A label encoding that does not fit the loss and the last layer would otherwise fail
	// at the first batch with a less helpful message.
	if got := m.LabelDim(); got != plan.LabelDim {
		return nil, fmt.Errorf("the model with loss %s takes labels of width %d, the plan's label %q has width %d",
			plan.Spec.Loss, got, plan.Label.Name, plan.LabelDim)
	}
	return m, nil
}
