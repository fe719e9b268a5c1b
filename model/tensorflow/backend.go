//go:build tensorflow

package tensorflow

import (
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
	spec, comp, err := model.FromPlan(plan)
	if err != nil {
		return nil, err
	}
	return New(spec, plan.InputDim, comp, plan.Spec.Seed)
}
