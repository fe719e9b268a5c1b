package messages

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
)

// The training controls of a job spec: Keras's EarlyStopping, ModelCheckpoint
// (save_best_only) and ReduceLROnPlateau callbacks, class weights and a learning-rate
// schedule, under Keras's names.

// EarlyStoppingSpec is Keras's EarlyStopping callback: training ends once Monitor has not
// improved by MinDelta for Patience epochs.
type EarlyStoppingSpec struct {
	// Monitor is "loss", "val_loss" or a compiled metric, with "val_" for its validation
	// value; default "val_loss".
	Monitor  string  `json:"monitor,omitempty" msgpack:"monitor"`
	MinDelta float64 `json:"min_delta,omitempty" msgpack:"min_delta"`
	Patience int     `json:"patience,omitempty" msgpack:"patience"`
	// Mode is "auto" (the default: max for accuracy-like metrics, min otherwise), "min" or "max".
	Mode string `json:"mode,omitempty" msgpack:"mode"`
	// Baseline, when set, must be beaten for the patience counter to start over.
	Baseline *float64 `json:"baseline,omitempty" msgpack:"baseline"`
	// RestoreBestWeights: the stored model holds the weights of the best epoch.
	RestoreBestWeights bool `json:"restore_best_weights,omitempty" msgpack:"restore_best_weights"`
	// StartFromEpoch: epochs before it (0-based) are not monitored.
	StartFromEpoch int `json:"start_from_epoch,omitempty" msgpack:"start_from_epoch"`
}

// ModelCheckpointSpec is Keras's ModelCheckpoint(save_best_only=True): the weights of the
// epoch with the best Monitor are kept beside the last ones.
type ModelCheckpointSpec struct {
	Monitor string `json:"monitor,omitempty" msgpack:"monitor"` // default "val_loss"
	Mode    string `json:"mode,omitempty" msgpack:"mode"`       // auto, min or max
	// InitialValueThreshold, when set, must be beaten before a first epoch is kept.
	InitialValueThreshold *float64 `json:"initial_value_threshold,omitempty" msgpack:"initial_value_threshold"`
}

// ReduceLROnPlateauSpec is Keras's ReduceLROnPlateau callback: the learning rate is
// multiplied by Factor once Monitor has not improved for Patience epochs. Zero fields take
// Keras's defaults (factor 0.1, patience 10, min_delta 1e-4).
type ReduceLROnPlateauSpec struct {
	Monitor  string   `json:"monitor,omitempty" msgpack:"monitor"`
	Factor   float64  `json:"factor,omitempty" msgpack:"factor"`
	Patience *int     `json:"patience,omitempty" msgpack:"patience"`
	Mode     string   `json:"mode,omitempty" msgpack:"mode"`
	MinDelta *float64 `json:"min_delta,omitempty" msgpack:"min_delta"`
	Cooldown int      `json:"cooldown,omitempty" msgpack:"cooldown"`
	MinLR    float64  `json:"min_lr,omitempty" msgpack:"min_lr"`
}

// Keras's ReduceLROnPlateau defaults.
const (
	DefaultReduceLRFactor   = 0.1
	DefaultReduceLRPatience = 10
	DefaultReduceLRMinDelta = 1e-4
)

// ClassWeightBalanced weighs each class n_samples / (n_classes × count), scikit-learn's
// "balanced", from the training rows' label counts.
const ClassWeightBalanced = "balanced"

// ClassWeightSpec is Keras's class_weight: a weight per class, keyed by the label's value
// as the table holds it (for a numeric 0/1 label, "0" and "1"), or "balanced".
type ClassWeightSpec struct {
	Balanced bool               `msgpack:"balanced,omitempty"`
	Weights  map[string]float64 `msgpack:"weights,omitempty"`
}

// UnmarshalJSON accepts "balanced" or an object of class → weight.
func (c *ClassWeightSpec) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		if s != ClassWeightBalanced {
			return fmt.Errorf("class_weight %q: want %q or an object of class to weight", s, ClassWeightBalanced)
		}
		*c = ClassWeightSpec{Balanced: true}
		return nil
	}
	var m map[string]float64
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*c = ClassWeightSpec{Weights: m}
	return nil
}

// MarshalJSON writes the form UnmarshalJSON reads.
func (c ClassWeightSpec) MarshalJSON() ([]byte, error) {
	if c.Balanced {
		return json.Marshal(ClassWeightBalanced)
	}
	return json.Marshal(c.Weights)
}

// Learning-rate schedules, by their Keras class names.
const (
	ScheduleExponentialDecay       = "ExponentialDecay"
	SchedulePiecewiseConstantDecay = "PiecewiseConstantDecay"
	ScheduleCosineDecay            = "CosineDecay"
	ScheduleInverseTimeDecay       = "InverseTimeDecay"
)

// ScheduleSpec is a Keras learning-rate schedule as keras.optimizers.schedules.serialize
// writes it: {"class_name": "CosineDecay", "config": {...}}. The optimizer's step counts
// batches from 0 over the whole job.
type ScheduleSpec struct {
	ClassName string         `json:"class_name" msgpack:"class_name"`
	Config    ScheduleConfig `json:"config" msgpack:"config"`
	// Module and RegisteredName are what Keras 3 adds; accepted and ignored.
	Module         string `json:"module,omitempty" msgpack:"-"`
	RegisteredName string `json:"registered_name,omitempty" msgpack:"-"`
}

// ScheduleConfig holds the arguments of every schedule; each uses its own.
type ScheduleConfig struct {
	InitialLearningRate float64 `json:"initial_learning_rate,omitempty" msgpack:"initial_learning_rate"`
	DecaySteps          int     `json:"decay_steps,omitempty" msgpack:"decay_steps"`
	DecayRate           float64 `json:"decay_rate,omitempty" msgpack:"decay_rate"`
	Staircase           bool    `json:"staircase,omitempty" msgpack:"staircase"`
	// PiecewiseConstantDecay: values[i] up to and including boundaries[i] steps.
	Boundaries []float64 `json:"boundaries,omitempty" msgpack:"boundaries"`
	Values     []float64 `json:"values,omitempty" msgpack:"values"`
	// CosineDecay: the floor as a fraction of the rate, and the Keras 3 linear warm-up.
	Alpha        float64  `json:"alpha,omitempty" msgpack:"alpha"`
	WarmupTarget *float64 `json:"warmup_target,omitempty" msgpack:"warmup_target"`
	WarmupSteps  int      `json:"warmup_steps,omitempty" msgpack:"warmup_steps"`
	Name         string   `json:"name,omitempty" msgpack:"-"`
}

// MonitorsOf lists the values a callback may monitor for the spec: loss and each metric,
// and their val_ forms when the job validates.
func (s JobSpec) MonitorsOf() []string {
	names := append([]string{"loss"}, s.Metrics...)
	if s.ValidationSplit > 0 {
		for _, n := range append([]string{"loss"}, s.Metrics...) {
			names = append(names, "val_"+n)
		}
	}
	return names
}

func checkMonitor(s JobSpec, field, monitor string) error {
	for _, n := range s.MonitorsOf() {
		if n == monitor {
			return nil
		}
	}
	reason := fmt.Sprintf("unknown metric %q (this job reports %s)", monitor, strings.Join(s.MonitorsOf(), ", "))
	if strings.HasPrefix(monitor, "val_") && s.ValidationSplit == 0 {
		reason = fmt.Sprintf("%q needs validation_split", monitor)
	}
	return &FieldError{Field: field, Reason: reason}
}

func checkMode(field, mode string) error {
	switch mode {
	case "", "auto", "min", "max":
		return nil
	}
	return &FieldError{Field: field, Reason: fmt.Sprintf("unknown mode %q (want auto, min or max)", mode)}
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// withControlDefaults fills the callbacks' default monitors.
func (s JobSpec) withControlDefaults() JobSpec {
	if e := s.EarlyStopping; e != nil && e.Monitor == "" {
		c := *e
		c.Monitor = "val_loss"
		s.EarlyStopping = &c
	}
	if c := s.ModelCheckpoint; c != nil && c.Monitor == "" {
		m := *c
		m.Monitor = "val_loss"
		s.ModelCheckpoint = &m
	}
	if r := s.ReduceLROnPlateau; r != nil {
		c := *r
		if c.Monitor == "" {
			c.Monitor = "val_loss"
		}
		if c.Factor == 0 {
			c.Factor = DefaultReduceLRFactor
		}
		if c.Patience == nil {
			p := DefaultReduceLRPatience
			c.Patience = &p
		}
		if c.MinDelta == nil {
			d := DefaultReduceLRMinDelta
			c.MinDelta = &d
		}
		s.ReduceLROnPlateau = &c
	}
	return s
}

// validateControls checks the training controls on their own; the coordinator checks
// class_weight against the label's classes when it plans.
func (s JobSpec) validateControls() error {
	if e := s.EarlyStopping; e != nil {
		if err := checkMonitor(s, "early_stopping.monitor", e.Monitor); err != nil {
			return err
		}
		if err := checkMode("early_stopping.mode", e.Mode); err != nil {
			return err
		}
		switch {
		case e.Patience < 0:
			return &FieldError{Field: "early_stopping.patience", Reason: "must not be negative"}
		case e.StartFromEpoch < 0:
			return &FieldError{Field: "early_stopping.start_from_epoch", Reason: "must not be negative"}
		case !finite(e.MinDelta):
			return &FieldError{Field: "early_stopping.min_delta", Reason: "must be a finite number"}
		case e.Baseline != nil && !finite(*e.Baseline):
			return &FieldError{Field: "early_stopping.baseline", Reason: "must be a finite number"}
		}
	}
	if c := s.ModelCheckpoint; c != nil {
		if err := checkMonitor(s, "model_checkpoint.monitor", c.Monitor); err != nil {
			return err
		}
		if err := checkMode("model_checkpoint.mode", c.Mode); err != nil {
			return err
		}
		if c.InitialValueThreshold != nil && !finite(*c.InitialValueThreshold) {
			return &FieldError{Field: "model_checkpoint.initial_value_threshold", Reason: "must be a finite number"}
		}
	}
	if r := s.ReduceLROnPlateau; r != nil {
		if err := checkMonitor(s, "reduce_lr_on_plateau.monitor", r.Monitor); err != nil {
			return err
		}
		if err := checkMode("reduce_lr_on_plateau.mode", r.Mode); err != nil {
			return err
		}
		switch {
		case !(r.Factor > 0 && r.Factor < 1):
			return &FieldError{Field: "reduce_lr_on_plateau.factor", Reason: fmt.Sprintf("must be in (0, 1), got %v", r.Factor)}
		case r.Patience != nil && *r.Patience < 0:
			return &FieldError{Field: "reduce_lr_on_plateau.patience", Reason: "must not be negative"}
		case r.Cooldown < 0:
			return &FieldError{Field: "reduce_lr_on_plateau.cooldown", Reason: "must not be negative"}
		case r.MinDelta != nil && !finite(*r.MinDelta):
			return &FieldError{Field: "reduce_lr_on_plateau.min_delta", Reason: "must be a finite number"}
		case r.MinLR < 0 || !finite(r.MinLR):
			return &FieldError{Field: "reduce_lr_on_plateau.min_lr", Reason: "must be a finite number, not negative"}
		case s.Optimizer.Schedule != nil:
			return &FieldError{Field: "reduce_lr_on_plateau", Reason: "cannot change the learning rate of an optimizer with a schedule (optimizer.schedule)"}
		}
	}
	if c := s.ClassWeight; c != nil {
		if !c.Balanced && len(c.Weights) == 0 {
			return &FieldError{Field: "class_weight", Reason: "give a weight per class or \"balanced\""}
		}
		for k, w := range c.Weights {
			if !(w >= 0) || !finite(w) {
				return &FieldError{Field: "class_weight", Reason: fmt.Sprintf("class %q: weight %v must be a finite number, not negative", k, w)}
			}
		}
		if s.Label.Encode == EncodeNone && s.Loss != "" && !isBinaryCrossentropy(s.Loss) {
			return &FieldError{Field: "class_weight", Reason: "applies to a classification: a categorical label (encode onehot or index) or a 0/1 label with binary_crossentropy"}
		}
	}
	if sc := s.Optimizer.Schedule; sc != nil {
		if err := sc.validate(); err != nil {
			return err
		}
	}
	return nil
}

func isBinaryCrossentropy(loss string) bool {
	switch strings.ToLower(strings.ReplaceAll(loss, "_", "")) {
	case "binarycrossentropy", "bce":
		return true
	}
	return false
}

func (sc *ScheduleSpec) validate() error {
	const f = "optimizer.schedule"
	c := sc.Config
	bad := func(field, reason string) error {
		return &FieldError{Field: f + ".config." + field, Reason: reason}
	}
	switch sc.ClassName {
	case ScheduleExponentialDecay, ScheduleInverseTimeDecay, ScheduleCosineDecay, SchedulePiecewiseConstantDecay:
	default:
		return &FieldError{Field: f + ".class_name", Reason: fmt.Sprintf("unknown schedule %q (want %s, %s, %s or %s)", sc.ClassName,
			ScheduleExponentialDecay, SchedulePiecewiseConstantDecay, ScheduleCosineDecay, ScheduleInverseTimeDecay)}
	}
	if sc.ClassName != SchedulePiecewiseConstantDecay && !(c.InitialLearningRate > 0 && finite(c.InitialLearningRate)) {
		return bad("initial_learning_rate", "must be a positive number")
	}
	switch sc.ClassName {
	case ScheduleExponentialDecay, ScheduleInverseTimeDecay:
		if c.DecaySteps <= 0 {
			return bad("decay_steps", "must be positive")
		}
		if !(c.DecayRate > 0 && finite(c.DecayRate)) {
			return bad("decay_rate", "must be a positive number")
		}
	case ScheduleCosineDecay:
		if c.DecaySteps <= 0 {
			return bad("decay_steps", "must be positive")
		}
		if !(c.Alpha >= 0 && c.Alpha <= 1) {
			return bad("alpha", "must be in [0, 1]")
		}
		if c.WarmupSteps < 0 {
			return bad("warmup_steps", "must not be negative")
		}
		if c.WarmupTarget != nil && !(*c.WarmupTarget > 0 && finite(*c.WarmupTarget)) {
			return bad("warmup_target", "must be a positive number")
		}
	case SchedulePiecewiseConstantDecay:
		if len(c.Values) != len(c.Boundaries)+1 {
			return bad("values", fmt.Sprintf("want one more value than boundaries, got %d values and %d boundaries", len(c.Values), len(c.Boundaries)))
		}
		for i, b := range c.Boundaries {
			if !finite(b) || (i > 0 && b <= c.Boundaries[i-1]) {
				return bad("boundaries", "must be finite and increasing")
			}
		}
		for _, v := range c.Values {
			if !(v > 0 && finite(v)) {
				return bad("values", "every value must be a positive number")
			}
		}
	}
	return nil
}

// checkControlLimits bounds what the controls allocate: the class weights and the
// schedule's boundaries.
func (s JobSpec) checkControlLimits(l SpecLimits) error {
	if c := s.ClassWeight; c != nil && l.ClassWeights > 0 && len(c.Weights) > l.ClassWeights {
		return &FieldError{Field: "class_weight", Reason: fmt.Sprintf("%d classes is over this coordinator's limit of %d", len(c.Weights), l.ClassWeights)}
	}
	if sc := s.Optimizer.Schedule; sc != nil && l.ScheduleBoundaries > 0 && len(sc.Config.Boundaries) > l.ScheduleBoundaries {
		return &FieldError{Field: "optimizer.schedule.config.boundaries", Reason: fmt.Sprintf("%d boundaries is over this coordinator's limit of %d", len(sc.Config.Boundaries), l.ScheduleBoundaries)}
	}
	return nil
}
