package model

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// Canonical loss names.
const (
	LossMSE                 = "mean_squared_error"
	LossMAE                 = "mean_absolute_error"
	LossHuber               = "huber"
	LossBinaryCrossentropy  = "binary_crossentropy"
	LossCategoricalCE       = "categorical_crossentropy"
	LossSparseCategoricalCE = "sparse_categorical_crossentropy"
)

// Optimizer names.
const (
	OptSGD     = "sgd"
	OptAdam    = "adam"
	OptRMSprop = "rmsprop"
	OptAdamW   = "adamw"
)

// Compile holds what Keras's model.compile() takes.
type Compile struct {
	Optimizer OptimizerConfig
	// Loss is "mse"/"mean_squared_error", "mae"/"mean_absolute_error", "huber",
	// "binary_crossentropy", "categorical_crossentropy" or "sparse_categorical_crossentropy"
	// (Keras class names such as "BinaryCrossentropy" are accepted too).
	Loss string
	// FromLogits tells a crossentropy loss that the model outputs logits.
	FromLogits bool
	// Metrics: "accuracy"/"acc" (binary, categorical or sparse categorical according to the
	// loss, as Keras picks), "binary_accuracy", "categorical_accuracy",
	// "sparse_categorical_accuracy", "mae", "rmse". Results are keyed by the name given here.
	Metrics []string
	// HuberDelta is the Huber loss's delta; 0 means Keras's 1.0.
	HuberDelta float64
}

// OptimizerConfig configures the optimizer. Zero fields take the Keras defaults.
type OptimizerConfig struct {
	Name         string // "sgd", "adam", "rmsprop", "adamw" (Keras class names accepted)
	LearningRate float64
	Momentum     float64 // SGD and RMSprop
	Nesterov     bool    // SGD
	Beta1, Beta2 float64 // Adam, AdamW
	Epsilon      float64 // Adam, AdamW, RMSprop
	Rho          float64 // RMSprop
	WeightDecay  float64 // AdamW (default 0.004); decoupled weight decay for the others when set
	ClipNorm     float64 // clip each gradient tensor to this L2 norm, as Keras's clipnorm
	// TFJSEpsilon selects TensorFlow.js's form of the Adam update (bias-corrected moments,
	// epsilon added to sqrt(v̂)) instead of Keras's (epsilon added to sqrt(v), bias
	// correction folded into the step size).
	TFJSEpsilon bool
	// TFJSForm computes every update in TensorFlow.js's order of float32 operations (SGD
	// momentum as an accumulator of gradients, Adam as with TFJSEpsilon, TF.js's moving
	// averages in BatchNormalization). The two orders agree to float32 rounding; this one is
	// for bit-level comparisons with TF.js.
	TFJSForm bool
	// Schedule varies the learning rate with the step; nil means constant.
	Schedule *Schedule
}

// normalize maps aliases to canonical names and fills defaults.
func (o *OptimizerConfig) normalize() error {
	switch strings.ToLower(o.Name) {
	case "", "adam":
		o.Name = OptAdam
	case "sgd":
		o.Name = OptSGD
	case "rmsprop":
		o.Name = OptRMSprop
	case "adamw":
		o.Name = OptAdamW
	default:
		return fmt.Errorf("unsupported optimizer %q", o.Name)
	}
	if o.LearningRate == 0 {
		if o.Name == OptSGD {
			o.LearningRate = 0.01
		} else {
			o.LearningRate = 0.001
		}
	}
	if o.LearningRate < 0 || math.IsNaN(o.LearningRate) || math.IsInf(o.LearningRate, 0) {
		return fmt.Errorf("learning rate must be positive, got %v", o.LearningRate)
	}
	if o.Beta1 == 0 {
		o.Beta1 = 0.9
	}
	if o.Beta2 == 0 {
		o.Beta2 = 0.999
	}
	if o.Epsilon == 0 {
		o.Epsilon = 1e-7
	}
	if o.Rho == 0 {
		o.Rho = 0.9
	}
	if o.Name == OptAdamW && o.WeightDecay == 0 {
		o.WeightDecay = 0.004
	}
	switch {
	case o.Momentum < 0 || o.Momentum >= 1:
		return fmt.Errorf("momentum must be in [0, 1), got %v", o.Momentum)
	case o.Beta1 <= 0 || o.Beta1 >= 1:
		return fmt.Errorf("beta_1 must be in (0, 1), got %v", o.Beta1)
	case o.Beta2 <= 0 || o.Beta2 >= 1:
		return fmt.Errorf("beta_2 must be in (0, 1), got %v", o.Beta2)
	case o.Rho <= 0 || o.Rho >= 1:
		return fmt.Errorf("rho must be in (0, 1), got %v", o.Rho)
	case o.Epsilon < 0:
		return fmt.Errorf("epsilon must not be negative, got %v", o.Epsilon)
	case o.WeightDecay < 0:
		return fmt.Errorf("weight_decay must not be negative, got %v", o.WeightDecay)
	case o.ClipNorm < 0:
		return fmt.Errorf("clipnorm must not be negative, got %v", o.ClipNorm)
	}
	if o.Nesterov && o.Name != OptSGD {
		return fmt.Errorf("nesterov applies to sgd only")
	}
	if o.TFJSForm && o.Name == OptAdam {
		o.TFJSEpsilon = true
	}
	if o.Schedule != nil {
		if err := o.Schedule.check(); err != nil {
			return err
		}
	}
	return nil
}

// canonicalLoss maps a loss alias to its canonical name.
func canonicalLoss(name string) (string, error) {
	switch strings.ToLower(strings.ReplaceAll(name, "_", "")) {
	case "mse", "meansquarederror":
		return LossMSE, nil
	case "mae", "meanabsoluteerror":
		return LossMAE, nil
	case "huber", "huberloss":
		return LossHuber, nil
	case "binarycrossentropy", "bce":
		return LossBinaryCrossentropy, nil
	case "categoricalcrossentropy":
		return LossCategoricalCE, nil
	case "sparsecategoricalcrossentropy":
		return LossSparseCategoricalCE, nil
	case "":
		return "", fmt.Errorf("loss is missing")
	}
	return "", fmt.Errorf("unsupported loss %q", name)
}

// normalize checks names and fills defaults; it keeps metric names as given.
func (c *Compile) normalize() error {
	if errs := c.check(); len(errs) > 0 {
		return errors.New(errs[0].Reason)
	}
	return nil
}

// check fills defaults and returns every problem with the job spec field it is in, in the
// order loss, metrics, optimizer. Metrics depend on the loss and are checked only when it is
// valid.
func (c *Compile) check() []FieldError {
	var errs []FieldError
	if field, err := c.checkLoss(); err != nil {
		errs = append(errs, FieldError{Field: field, Reason: err.Error()})
	} else if err := c.checkMetrics(); err != nil {
		errs = append(errs, FieldError{Field: "metrics", Reason: err.Error()})
	}
	if err := c.Optimizer.normalize(); err != nil {
		errs = append(errs, FieldError{Field: "optimizer", Reason: err.Error()})
	}
	return errs
}

// checkLoss canonicalises the loss name; a problem comes with the field it is in.
func (c *Compile) checkLoss() (field string, err error) {
	l, err := canonicalLoss(c.Loss)
	if err != nil {
		return "loss", err
	}
	c.Loss = l
	if c.FromLogits && l != LossBinaryCrossentropy && l != LossCategoricalCE && l != LossSparseCategoricalCE {
		return "from_logits", fmt.Errorf("from_logits applies to crossentropy losses only, not %s", l)
	}
	if c.HuberDelta == 0 {
		c.HuberDelta = 1
	}
	if c.HuberDelta < 0 {
		return "loss", fmt.Errorf("huber delta must be positive")
	}
	return "", nil
}

func (c *Compile) checkMetrics() error {
	seen := map[string]bool{}
	for _, m := range c.Metrics {
		if _, err := metricKind(m, c.Loss, 0); err != nil {
			return err
		}
		if seen[m] || m == "loss" {
			return fmt.Errorf("duplicate metric %q", m)
		}
		seen[m] = true
	}
	return nil
}

// Validate checks the compile settings and fills defaults (canonical loss name, optimizer
// defaults).
func (c *Compile) Validate() error { return c.normalize() }
