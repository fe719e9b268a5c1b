package tensorflow

import (
	"errors"
	"fmt"

	"pgtrain/model"
)

// ErrUnsupported is returned for compile settings the TensorFlow graph does not implement.
var ErrUnsupported = errors.New("not supported by the tensorflow backend")

// checkSupported refuses normalised compile settings the graph does not implement: learning
// rate schedules and the TF.js forms of the updates (which exist for bit-level comparisons
// with TensorFlow.js, not for training).
func checkSupported(c model.Compile) error {
	switch o := c.Optimizer; {
	case o.Schedule != nil:
		return fmt.Errorf("learning rate schedule %q: %w", o.Schedule.Kind, ErrUnsupported)
	case o.TFJSForm || o.TFJSEpsilon:
		return fmt.Errorf("the TF.js form of the optimizer updates: %w", ErrUnsupported)
	}
	switch c.Optimizer.Name {
	case model.OptSGD, model.OptAdam, model.OptAdamW, model.OptRMSprop:
	default:
		return fmt.Errorf("optimizer %q: %w", c.Optimizer.Name, ErrUnsupported)
	}
	switch c.Loss {
	case model.LossMSE, model.LossMAE, model.LossHuber, model.LossBinaryCrossentropy,
		model.LossCategoricalCE, model.LossSparseCategoricalCE:
	default:
		return fmt.Errorf("loss %q: %w", c.Loss, ErrUnsupported)
	}
	return nil
}

// newMetrics is the evaluator of ref's compiled metrics: the Go engine's own, resolved from
// the same normalised settings and output width, so that both backends report the same
// numbers for the same predictions.
func newMetrics(ref *model.Sequential) (*model.Metrics, error) {
	c, _ := ref.CompileConfig()
	return model.NewMetrics(c, ref.OutputDim())
}
