package trainer

import (
	"pgtrain/messages"
	"pgtrain/model"
)

func init() { RegisterBackend("go", newGoModel) }

// newGoModel builds the pure-Go engine from the job spec: its model document, optimizer,
// loss, metrics and seed, for the plan's input width.
func newGoModel(plan *messages.Plan) (Model, error) {
	spec, comp, err := model.FromPlan(plan)
	if err != nil {
		return nil, err
	}
	return model.New(spec, plan.InputDim, comp, plan.Spec.Seed)
}
