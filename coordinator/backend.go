package coordinator

import (
	"fmt"

	"pgtrain/messages"
	"pgtrain/model"
)

// backendTensorFlow is the spec's name of the TensorFlow engine.
const backendTensorFlow = "tensorflow"

// checkBackend refuses at submission what the TensorFlow backend's trainer would refuse when
// it starts the job: its graph has no regularization losses nor constraint projections, and
// it takes neither sample weights nor a learning rate changed between epochs. The spec names
// its backend, so these are known here whether or not any trainer has the backend built in.
func checkBackend(spec messages.JobSpec, ms *model.Spec) error {
	if spec.Backend != backendTensorFlow {
		return nil
	}
	refuse := func(field string) error {
		return &messages.FieldError{Field: field, Reason: "is not supported by the tensorflow backend (use backend \"go\")"}
	}
	for i, l := range ms.Layers {
		if l.Type != model.LayerDense {
			continue
		}
		for _, f := range []struct {
			name string
			set  bool
		}{
			{"kernel_regularizer", l.KernelRegularizer != nil}, {"bias_regularizer", l.BiasRegularizer != nil},
			{"activity_regularizer", l.ActivityRegularizer != nil},
			{"kernel_constraint", l.KernelConstraint != nil}, {"bias_constraint", l.BiasConstraint != nil},
		} {
			if f.set {
				return refuse(fmt.Sprintf("model.layers[%d].%s", i, f.name))
			}
		}
	}
	switch {
	case spec.ClassWeight != nil:
		return refuse("class_weight")
	case spec.SampleWeightColumn != "":
		return refuse("sample_weight_column")
	case spec.ReduceLROnPlateau != nil:
		return refuse("reduce_lr_on_plateau")
	}
	return nil
}
