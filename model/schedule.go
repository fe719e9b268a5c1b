package model

import (
	"encoding/json"
	"fmt"
	"math"

	"pgtrain/messages"
)

// Schedule kinds.
const (
	ScheduleExponential = "exponential_decay"
	ScheduleCosine      = "cosine_decay"
	SchedulePiecewise   = "piecewise_constant_decay"
	ScheduleInverseTime = "inverse_time_decay"
)

// Schedule is a Keras learning-rate schedule, evaluated at the optimizer's iteration count
// (0 for the first update).
type Schedule struct {
	Kind string // one of the Schedule* kinds
	// InitialLearningRate: 0 means the optimizer's LearningRate.
	InitialLearningRate float64
	DecaySteps          int
	// Exponential decay: lr·rate^(step/decay_steps); inverse time decay:
	// lr/(1 + rate·step/decay_steps); the ratio floored when Staircase.
	DecayRate float64
	Staircase bool
	// Cosine decay: the floor as a fraction of the initial rate, and the Keras 3 linear
	// warm-up from the initial rate to WarmupTarget over WarmupSteps (none when nil).
	Alpha        float64
	WarmupTarget *float64
	WarmupSteps  int
	// Piecewise constant decay: Values[i] while step <= Boundaries[i], the last value after.
	Boundaries []float64
	Values     []float64
}

func (s *Schedule) check() error {
	switch s.Kind {
	case ScheduleExponential, ScheduleInverseTime:
		if s.DecaySteps <= 0 {
			return fmt.Errorf("%s: decay_steps must be positive", s.Kind)
		}
		if s.DecayRate <= 0 {
			return fmt.Errorf("%s: decay_rate must be positive", s.Kind)
		}
	case ScheduleCosine:
		if s.DecaySteps <= 0 {
			return fmt.Errorf("cosine decay: decay_steps must be positive")
		}
		if s.Alpha < 0 || s.Alpha > 1 {
			return fmt.Errorf("cosine decay: alpha must be in [0, 1]")
		}
		if s.WarmupSteps < 0 {
			return fmt.Errorf("cosine decay: warmup_steps must not be negative")
		}
	case SchedulePiecewise:
		if len(s.Values) != len(s.Boundaries)+1 {
			return fmt.Errorf("piecewise constant decay: want one more value than boundaries, got %d and %d", len(s.Values), len(s.Boundaries))
		}
		for i := 1; i < len(s.Boundaries); i++ {
			if s.Boundaries[i] <= s.Boundaries[i-1] {
				return fmt.Errorf("piecewise constant decay: boundaries must increase")
			}
		}
	default:
		return fmt.Errorf("unsupported learning rate schedule %q", s.Kind)
	}
	return nil
}

// rate returns the learning rate at an iteration count, by Keras 3's formulas.
func (s *Schedule) rate(initial float64, step int64) float64 {
	if s.InitialLearningRate != 0 {
		initial = s.InitialLearningRate
	}
	p := float64(step)
	switch s.Kind {
	case ScheduleExponential:
		e := p / float64(s.DecaySteps)
		if s.Staircase {
			e = math.Floor(e)
		}
		return initial * math.Pow(s.DecayRate, e)
	case ScheduleInverseTime:
		e := p / float64(s.DecaySteps)
		if s.Staircase {
			e = math.Floor(e)
		}
		return initial / (1 + s.DecayRate*e)
	case SchedulePiecewise:
		for i, b := range s.Boundaries {
			if p <= b {
				return s.Values[i]
			}
		}
		return s.Values[len(s.Values)-1]
	case ScheduleCosine:
		decaySteps := float64(s.DecaySteps)
		if s.WarmupTarget == nil {
			return cosineDecayed(initial, math.Min(p, decaySteps), decaySteps, s.Alpha)
		}
		warm := float64(s.WarmupSteps)
		p = math.Min(p, decaySteps+warm)
		if p < warm {
			return (*s.WarmupTarget-initial)*(p/warm) + initial
		}
		return cosineDecayed(*s.WarmupTarget, p-warm, decaySteps, s.Alpha)
	}
	return initial
}

func cosineDecayed(from, step, decaySteps, alpha float64) float64 {
	c := 0.5 * (1 + math.Cos(math.Pi*(step/decaySteps)))
	return from * ((1-alpha)*c + alpha)
}

// ScheduleOf maps a job spec's schedule (Keras class names) onto the engine's; nil for none.
func ScheduleOf(sc *messages.ScheduleSpec) *Schedule {
	if sc == nil {
		return nil
	}
	c := sc.Config
	s := &Schedule{InitialLearningRate: c.InitialLearningRate, DecaySteps: c.DecaySteps, DecayRate: c.DecayRate,
		Staircase: c.Staircase, Alpha: c.Alpha, WarmupSteps: c.WarmupSteps,
		Boundaries: append([]float64(nil), c.Boundaries...), Values: append([]float64(nil), c.Values...)}
	if c.WarmupTarget != nil {
		w := *c.WarmupTarget
		s.WarmupTarget = &w
	}
	switch sc.ClassName {
	case messages.ScheduleExponentialDecay:
		s.Kind = ScheduleExponential
	case messages.ScheduleCosineDecay:
		s.Kind = ScheduleCosine
	case messages.SchedulePiecewiseConstantDecay:
		s.Kind = SchedulePiecewise
	case messages.ScheduleInverseTimeDecay:
		s.Kind = ScheduleInverseTime
	default:
		s.Kind = sc.ClassName // check refuses it
	}
	return s
}

// parseKerasSchedule reads a serialized Keras schedule ({"class_name", "config"}), as a
// Keras optimizer config holds it under learning_rate.
func parseKerasSchedule(b []byte) (*Schedule, error) {
	var sc messages.ScheduleSpec
	if err := json.Unmarshal(b, &sc); err != nil {
		return nil, err
	}
	s := ScheduleOf(&sc)
	if s.Kind == sc.ClassName {
		return nil, fmt.Errorf("unsupported learning rate schedule %q", sc.ClassName)
	}
	return s, s.check()
}

// SetLearningRate replaces a constant learning rate, as assigning
// model.optimizer.learning_rate does in Keras (ReduceLROnPlateau); a schedule cannot be set.
func (m *Sequential) SetLearningRate(lr float64) error {
	if !m.compiled {
		return ErrNotCompiled
	}
	if m.opt.cfg.Schedule != nil {
		return fmt.Errorf("the optimizer's learning rate follows a schedule")
	}
	if !(lr > 0) || math.IsInf(lr, 0) {
		return fmt.Errorf("learning rate must be positive, got %v", lr)
	}
	m.opt.cfg.LearningRate = lr
	m.comp.Optimizer.LearningRate = lr
	return nil
}
