package coordinator

import (
	"pgtrain/messages"
	"pgtrain/model"
)

// checkModel builds the job's model on the planned input width, so a spec the trainer could
// not train is refused at submission, naming the field at fault.
// ms is the plan's model document, parsed.
func checkModel(p *messages.Plan, ms *model.Spec) error {
	if errs := model.Check(ms, p.InputDim, model.CompileOf(p.Spec), model.PlanLabels(p)); len(errs) > 0 {
		return &messages.FieldError{Field: errs[0].Field, Reason: errs[0].Reason}
	}
	return nil
}
