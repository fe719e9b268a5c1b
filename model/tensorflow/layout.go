package tensorflow

import (
	"fmt"
	"slices"

	"pgtrain/model"
)

// varSpec is one weight tensor of the model, as the Go engine and the TF.js manifest name it.
type varSpec struct {
	Name      string // "<layer>/<weight>"
	Shape     []int
	Trainable bool
	Layer     int // index in the spec's layer list
}

func (v varSpec) size() int {
	n := 1
	for _, d := range v.Shape {
		n *= d
	}
	return n
}

// layout lists the weights of a validated spec for inputDim features, in the Go engine's
// (and the TF.js manifest's) order: per Dense layer kernel [in, units] then bias [units];
// per BatchNormalization layer gamma, beta (when scale and center), moving_mean and
// moving_variance, the last two not trainable.
func layout(spec *model.Spec, inputDim int) ([]varSpec, error) {
	var vs []varSpec
	dim := inputDim
	for i, l := range spec.Layers {
		switch l.Type {
		case model.LayerDense:
			if l.KernelRegularizer != nil || l.BiasRegularizer != nil || l.ActivityRegularizer != nil {
				return nil, fmt.Errorf("layers[%d] %q: regularizers are %w", i, l.Name, ErrUnsupported)
			}
			if l.KernelConstraint != nil || l.BiasConstraint != nil {
				return nil, fmt.Errorf("layers[%d] %q: constraints are %w", i, l.Name, ErrUnsupported)
			}
			vs = append(vs, varSpec{Name: l.Name + "/kernel", Shape: []int{dim, l.Units}, Trainable: true, Layer: i})
			if l.UseBias {
				vs = append(vs, varSpec{Name: l.Name + "/bias", Shape: []int{l.Units}, Trainable: true, Layer: i})
			}
			dim = l.Units
		case model.LayerBatchNorm:
			if l.Scale {
				vs = append(vs, varSpec{Name: l.Name + "/gamma", Shape: []int{dim}, Trainable: true, Layer: i})
			}
			if l.Center {
				vs = append(vs, varSpec{Name: l.Name + "/beta", Shape: []int{dim}, Trainable: true, Layer: i})
			}
			vs = append(vs,
				varSpec{Name: l.Name + "/moving_mean", Shape: []int{dim}, Layer: i},
				varSpec{Name: l.Name + "/moving_variance", Shape: []int{dim}, Layer: i})
		case model.LayerDropout, model.LayerActivation, model.LayerLeakyReLU:
		default:
			return nil, fmt.Errorf("layers[%d] %q: the tensorflow backend has no %q layer", i, l.Name, l.Type)
		}
	}
	return vs, nil
}

// checkLayout makes sure the layout agrees with the weights the Go engine built, name for
// name and shape for shape, so that weights move between the two without a mapping.
func checkLayout(vs []varSpec, ws []model.Tensor) error {
	if len(vs) != len(ws) {
		return fmt.Errorf("the graph has %d weight tensors, the Go engine %d", len(vs), len(ws))
	}
	for i, v := range vs {
		if v.Name != ws[i].Name || !slices.Equal(v.Shape, ws[i].Shape) {
			return fmt.Errorf("weight %d is %s %v in the graph, %s %v in the Go engine", i, v.Name, v.Shape, ws[i].Name, ws[i].Shape)
		}
	}
	return nil
}

// slotNames are the optimizer's state tensors for each trainable weight, in the order the
// training ops take them. RMSprop always has its momentum slot: TensorFlow's update takes
// one, and with momentum 0 it holds the last step.
func slotNames(o model.OptimizerConfig) []string {
	switch o.Name {
	case model.OptSGD:
		if o.Momentum > 0 {
			return []string{"momentum"}
		}
		return nil
	case model.OptAdam, model.OptAdamW:
		return []string{"m", "v"}
	case model.OptRMSprop:
		return []string{"ms", "mom"}
	}
	return nil
}
