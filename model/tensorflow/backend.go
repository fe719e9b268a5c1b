//go:build tensorflow

package tensorflow

import (
	"fmt"

	"pgtrain/messages"
	"pgtrain/model"
	"pgtrain/trainer"
)

// BackendName is the name jobs and the trainer's --backend flag use for this backend.
const BackendName = "tensorflow"

func init() { trainer.RegisterBackend(BackendName, newFromPlan) }

// newFromPlan builds the model of a job: its model document, optimizer, loss, metrics and
// seed, for the plan's input width, as the go backend reads them.
func newFromPlan(plan *messages.Plan) (trainer.Model, error) {
	spec, err := model.ParseSpec(plan.Spec.Model)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	m, err := New(spec, plan.InputDim, compileFromPlan(plan), plan.Spec.Seed)
	if err != nil {
		return nil, err
	}
	if got := m.LabelDim(); got != plan.LabelDim {
		m.Close()
		return nil, fmt.Errorf("the model with loss %s takes labels of width %d, the plan's label %q has width %d",
			plan.Spec.Loss, got, plan.Label.Name, plan.LabelDim)
	}
	return m, nil
}
