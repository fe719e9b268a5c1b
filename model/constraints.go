package model

import (
	"encoding/json"
	"fmt"
	"math"
)

// Constraint kinds: the Keras constraints, applied to a weight after every optimizer step.
const (
	ConstraintMaxNorm    = "max_norm"
	ConstraintNonNeg     = "non_neg"
	ConstraintUnitNorm   = "unit_norm"
	ConstraintMinMaxNorm = "min_max_norm"
)

// Constraint is a Keras weight constraint. The norms are L2 norms along Axis (0: over the
// inputs of each unit of a Dense kernel, Keras's default; 1 or -1: over the units of each
// input). Fields that do not apply to Kind are zero.
type Constraint struct {
	Kind     string  `json:"kind"`
	MaxValue float64 `json:"max_value"`           // MaxNorm, MinMaxNorm; written even when 0, which is no default
	MinValue float64 `json:"min_value,omitempty"` // MinMaxNorm
	Rate     float64 `json:"rate"`                // MinMaxNorm; written even when 0
	Axis     int     `json:"axis,omitempty"`
}

// constraintEpsilon is Keras's backend epsilon, added to the norms before dividing.
const constraintEpsilon = 1e-7

func (c *Constraint) check() error {
	switch c.Kind {
	case ConstraintNonNeg:
		return nil
	case ConstraintMaxNorm, ConstraintUnitNorm, ConstraintMinMaxNorm:
	default:
		return fmt.Errorf("unsupported constraint %q", c.Kind)
	}
	if c.Axis != 0 && c.Axis != 1 && c.Axis != -1 {
		return fmt.Errorf("%s constraint: axis %d is not one of 0, 1, -1", c.Kind, c.Axis)
	}
	switch c.Kind {
	case ConstraintMaxNorm:
		if !(c.MaxValue >= 0) || math.IsInf(c.MaxValue, 0) {
			return fmt.Errorf("max_norm constraint: max_value must be finite and not negative, got %v", c.MaxValue)
		}
	case ConstraintMinMaxNorm:
		if !(c.MinValue >= 0 && c.MaxValue >= c.MinValue) || math.IsInf(c.MaxValue, 0) {
			return fmt.Errorf("min_max_norm constraint: want 0 <= min_value <= max_value, got %v, %v", c.MinValue, c.MaxValue)
		}
		if !(c.Rate >= 0 && c.Rate <= 1) {
			return fmt.Errorf("min_max_norm constraint: rate must be in [0, 1], got %v", c.Rate)
		}
	}
	return nil
}

// apply projects w (rows×cols, row-major) in place as the Keras constraint does, each
// operation rounded to float32 and the squares summed in float64, as TF.js computes it. A
// vector (a bias, rows or cols 1) has a single norm whatever the axis.
func (c *Constraint) apply(w []float32, rows, cols int) {
	if c.Kind == ConstraintNonNeg {
		for i, v := range w {
			if v < 0 {
				w[i] = 0
			}
		}
		return
	}
	scale := func(norm float32) float32 {
		var desired float32
		switch c.Kind {
		case ConstraintMaxNorm:
			desired = min(max(norm, 0), float32(c.MaxValue))
		case ConstraintUnitNorm:
			desired = 1
		case ConstraintMinMaxNorm:
			r := float32(c.Rate)
			desired = r*min(max(norm, float32(c.MinValue)), float32(c.MaxValue)) + float32(1-c.Rate)*norm
		}
		return desired / (constraintEpsilon + norm)
	}
	if rows == 1 || cols == 1 {
		var s float64
		for _, v := range w {
			s += float64(v * v)
		}
		f := scale(sqrt32(float32(s)))
		for i := range w {
			w[i] *= f
		}
		return
	}
	if c.Axis == 0 {
		// One norm per column: over the inputs of each unit.
		for j := 0; j < cols; j++ {
			var s float64
			for r := 0; r < rows; r++ {
				v := w[r*cols+j]
				s += float64(v * v)
			}
			f := scale(sqrt32(float32(s)))
			for r := 0; r < rows; r++ {
				w[r*cols+j] *= f
			}
		}
		return
	}
	for r := 0; r < rows; r++ {
		row := w[r*cols : (r+1)*cols]
		var s float64
		for _, v := range row {
			s += float64(v * v)
		}
		f := scale(sqrt32(float32(s)))
		for j := range row {
			row[j] *= f
		}
	}
}

// applyConstraints projects every constrained weight; Sequential calls it after each
// optimizer step, as Keras's optimizers do.
func (m *Sequential) applyConstraints() {
	for _, l := range m.layers {
		d, ok := l.(*denseLayer)
		if !ok {
			continue
		}
		if c := d.ls.KernelConstraint; c != nil {
			c.apply(d.kernel.w, d.in, d.out)
		}
		if c := d.ls.BiasConstraint; c != nil && d.bias != nil {
			c.apply(d.bias.w, 1, d.out)
		}
	}
}

// parseKerasConstraint reads {class_name, config} of MaxNorm, NonNeg, UnitNorm or
// MinMaxNorm (and their snake_case string forms), with Keras's defaults.
func parseKerasConstraint(v json.RawMessage) (*Constraint, error) {
	class, cfg, err := kerasObjectOf(v)
	if err != nil {
		return nil, fmt.Errorf("invalid constraint: %v", err)
	}
	c := &Constraint{}
	var keys []string
	switch normName(class) {
	case "maxnorm":
		c.Kind, c.MaxValue, keys = ConstraintMaxNorm, 2, []string{"max_value", "axis"}
	case "nonneg":
		c.Kind = ConstraintNonNeg
	case "unitnorm":
		c.Kind, keys = ConstraintUnitNorm, []string{"axis"}
	case "minmaxnorm":
		c.Kind, c.MaxValue, c.Rate, keys = ConstraintMinMaxNorm, 1, 1, []string{"min_value", "max_value", "rate", "axis"}
	default:
		return nil, fmt.Errorf("unsupported constraint %q (supported: MaxNorm, NonNeg, UnitNorm, MinMaxNorm)", class)
	}
	for _, k := range keys {
		raw, ok := cfg[k]
		delete(cfg, k)
		if !ok || isNull(raw) {
			continue
		}
		if k == "axis" {
			// Keras writes an int, or a one-element list.
			var axes []float64
			if json.Unmarshal(raw, &axes) == nil {
				if len(axes) != 1 {
					return nil, fmt.Errorf("constraint %s: only a single axis is supported, got %s", class, raw)
				}
				raw, _ = json.Marshal(axes[0])
			}
		}
		f, err := jsonNumber(raw)
		if err != nil {
			return nil, fmt.Errorf("constraint %s: option %q must be a number", class, k)
		}
		switch k {
		case "max_value":
			c.MaxValue = f
		case "min_value":
			c.MinValue = f
		case "rate":
			c.Rate = f
		case "axis":
			if f != math.Trunc(f) {
				return nil, fmt.Errorf("constraint %s: axis must be an integer", class)
			}
			c.Axis = int(f)
		}
	}
	if err := refuseExtra(cfg, "constraint "+class); err != nil {
		return nil, err
	}
	return c, c.check()
}

// kerasConstraint is the exported {class_name, config} of a constraint (the class names
// and snake_case options TF.js reads).
func kerasConstraint(c *Constraint) any {
	if c == nil {
		return nil
	}
	switch c.Kind {
	case ConstraintMaxNorm:
		return kv{"class_name": "MaxNorm", "config": kv{"max_value": c.MaxValue, "axis": c.Axis}}
	case ConstraintUnitNorm:
		return kv{"class_name": "UnitNorm", "config": kv{"axis": c.Axis}}
	case ConstraintMinMaxNorm:
		return kv{"class_name": "MinMaxNorm", "config": kv{"min_value": c.MinValue, "max_value": c.MaxValue, "rate": c.Rate, "axis": c.Axis}}
	default:
		return kv{"class_name": "NonNeg", "config": kv{}}
	}
}

// UnmarshalJSON reads pgtrain's form ({"kind": "max_norm", "max_value": 3}, Keras's
// defaults for what it leaves out) or a Keras {class_name, config} object.
func (c *Constraint) UnmarshalJSON(b []byte) error {
	if isKerasObject(b) {
		k, err := parseKerasConstraint(b)
		if err != nil {
			return err
		}
		*c = *k
		return nil
	}
	type plain Constraint
	var probe struct {
		Kind string `json:"kind"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return err
	}
	p := plain{Kind: probe.Kind}
	switch probe.Kind {
	case ConstraintMaxNorm:
		p.MaxValue = 2
	case ConstraintMinMaxNorm:
		p.MaxValue, p.Rate = 1, 1
	}
	if err := decodeStrict(b, &p); err != nil {
		return err
	}
	*c = Constraint(p)
	return nil
}
