package coordinator

import (
	"pgtrain/messages"
	"pgtrain/model"
)

// checkModel builds the job's model on the planned input width, so a spec the trainer could
// not train is refused at submission, naming the field at fault.
func checkModel(p *messages.Plan) error {
	ms, err := model.ParseSpec(p.Spec.Model)
	if err != nil {
		return &messages.FieldError{Field: "model", Reason: err.Error()}
	}
	if errs := model.Check(ms, p.InputDim, model.CompileOf(p.Spec), model.PlanLabels(p)); len(errs) > 0 {
		return &messages.FieldError{Field: errs[0].Field, Reason: errs[0].Reason}
	}
	return nil
}
