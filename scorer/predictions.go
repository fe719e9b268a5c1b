package scorer

import (
	"fmt"
	"math"
	"slices"

	"pgtrain/messages"
)

// outputs turns the model's outputs for a batch (rows × width) into the output table's
// row values after the key: the value for regression; the class, its probability and
// (when asked) every class's probability for classification.
type outputs struct {
	task       string
	classes    []string
	fromLogits bool
	probs      bool
}

func newOutputs(pp *messages.PredictionPlan) outputs {
	return outputs{task: pp.Task, classes: pp.Classes, fromLogits: pp.FromLogits, probs: pp.Probabilities}
}

// check refuses a model whose output width the task cannot read: one value for
// regression; one score per class, or one probability of the second of two classes.
func (o outputs) check(width int) error {
	switch {
	case o.task == messages.TaskRegression && width == 1:
	case o.task == messages.TaskClassification && (width == len(o.classes) || width == 1 && len(o.classes) == 2):
	default:
		return fmt.Errorf("a %s model with %d classes cannot have %d outputs", o.task, len(o.classes), width)
	}
	return nil
}

// row returns the values of one prediction row from the model's output row.
func (o outputs) row(out []float32) []any {
	if o.task == messages.TaskRegression {
		return []any{out[0]}
	}
	p := o.probabilities(out)
	best := 0
	for i, v := range p {
		if v > p[best] {
			best = i
		}
	}
	vals := []any{o.classes[best], p[best]}
	if o.probs {
		vals = append(vals, p)
	}
	return vals
}

// probabilities are the class probabilities: the outputs themselves, or their softmax
// (sigmoid for a single output) when the model outputs logits. One output is the second
// class's probability, as binary crossentropy trains it.
func (o outputs) probabilities(out []float32) []float32 {
	if len(out) == 1 {
		p := out[0]
		if o.fromLogits {
			p = float32(1 / (1 + math.Exp(-float64(p))))
		}
		return []float32{1 - p, p}
	}
	if !o.fromLogits {
		return slices.Clone(out)
	}
	top := float64(slices.Max(out))
	sum := 0.0
	exp := make([]float64, len(out))
	for i, v := range out {
		exp[i] = math.Exp(float64(v) - top)
		sum += exp[i]
	}
	p := make([]float32, len(out))
	for i := range exp {
		p[i] = float32(exp[i] / sum)
	}
	return p
}
