package messages

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// SweepVariant is one variant of a sweep (JobSpec.Sweep): what it changes in the job's spec.
// Every field left out keeps the job's value.
type SweepVariant struct {
	// Optimizer replaces the job's optimizer as a whole; LearningRate then sets its rate.
	Optimizer    *OptimizerSpec `json:"optimizer,omitempty" msgpack:"optimizer,omitempty"`
	LearningRate *float64       `json:"learning_rate,omitempty" msgpack:"learning_rate,omitempty"`
	// Units are the sizes of the model's Dense layers, one per Dense layer in order.
	Units []int `json:"units,omitempty" msgpack:"units,omitempty"`
	// Dropout is the rate of every Dropout layer.
	Dropout *float64 `json:"dropout,omitempty" msgpack:"dropout,omitempty"`
	// Seed sets the initial weights, the dropout masks, the order in which the ranges are
	// read and the shuffle of rows within each range, as the job's seed does.
	Seed *int64 `json:"seed,omitempty" msgpack:"seed,omitempty"`
}

// SweepVariants is the spec's variant list. It decodes each variant strictly on its own,
// so that an unknown field is named with its variant (sweep[2]).
type SweepVariants []SweepVariant

func (vs *SweepVariants) UnmarshalJSON(b []byte) error {
	if string(bytes.TrimSpace(b)) == "null" {
		*vs = nil
		return nil
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(b, &raws); err != nil {
		return &FieldError{Field: "sweep", Reason: "want a list of variants: " + err.Error()}
	}
	out := make(SweepVariants, len(raws))
	for i, raw := range raws {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&out[i]); err != nil {
			return &FieldError{Field: SweepField(i, ""), Reason: err.Error()}
		}
	}
	*vs = out
	return nil
}

// SweepField names a field of variant i in errors ("sweep[1].units"); "" names the variant.
func SweepField(i int, field string) string {
	f := "sweep[" + strconv.Itoa(i) + "]"
	if field != "" {
		f += "." + field
	}
	return f
}

// PlanVariant is the variant a trainer trains, set on the plan it derives (Plan.ForVariant);
// a stored plan never has one.
type PlanVariant struct {
	Index     int          `msgpack:"index" json:"index"`
	Overrides SweepVariant `msgpack:"overrides" json:"overrides"`
}

// DefaultMaxSweepVariants bounds the variants of one sweep unless configured otherwise.
const DefaultMaxSweepVariants = 16

// Variant is the spec variant i trains on: the job's spec with the variant's optimizer,
// learning rate and seed, and no sweep. The layer overrides (units, dropout) apply to the
// model document when it is built (model.FromPlan, through Plan.ForVariant).
func (s JobSpec) Variant(i int) JobSpec {
	v := s.Sweep[i]
	out := s
	out.Sweep, out.SweepMonitor, out.SweepMode = nil, "", ""
	if v.Optimizer != nil {
		out.Optimizer = *v.Optimizer
		if out.Optimizer.Name == "" {
			out.Optimizer.Name = "adam"
		}
	}
	if v.LearningRate != nil {
		out.Optimizer.LearningRate = *v.LearningRate
	}
	if v.Seed != nil {
		out.Seed = *v.Seed
	}
	return out
}

// ForVariant is the plan a trainer of variant i trains on: the same ranges, batches and
// preprocessing, the variant's spec, and the variant's model overrides in Variant. The
// variant reads the ranges in its own seed's order (EpochOrder), as the variant run alone
// would: READY holds every batch of a sweep, in any order.
func (p *Plan) ForVariant(i int) *Plan {
	vp := *p
	vp.Spec = p.Spec.Variant(i)
	vp.Variant = &PlanVariant{Index: i, Overrides: p.Spec.Sweep[i]}
	return &vp
}

// InVariant names variant i in a spec error of its own spec (Variant): "optimizer.name"
// becomes "sweep[1].optimizer.name".
func InVariant(i int, err error) error {
	var fe *FieldError
	if errors.As(err, &fe) {
		return &FieldError{Field: SweepField(i, fe.Field), Reason: fe.Reason}
	}
	return &FieldError{Field: SweepField(i, ""), Reason: err.Error()}
}

// Sweep monitor defaults and modes.
const (
	SweepModeAuto = "auto"
	SweepModeMin  = "min"
	SweepModeMax  = "max"
)

// validateSweep checks the variants on their own; the coordinator builds each variant's
// model against the plan.
func (s JobSpec) validateSweep() error {
	if s.Sweep == nil {
		switch {
		case s.SweepMonitor != "":
			return &FieldError{Field: "sweep_monitor", Reason: "needs sweep"}
		case s.SweepMode != "":
			return &FieldError{Field: "sweep_mode", Reason: "needs sweep"}
		}
		return nil
	}
	if len(s.Sweep) == 0 {
		return &FieldError{Field: "sweep", Reason: "at least one variant is required (or leave sweep out)"}
	}
	if s.InitFrom != "" {
		return &FieldError{Field: "sweep", Reason: "a sweep cannot start from a stored model (init_from): its variants' layers may differ"}
	}
	if s.Backend != "go" {
		return &FieldError{Field: "sweep", Reason: fmt.Sprintf("sweep variants train on the go backend, not %q", s.Backend)}
	}
	for i, v := range s.Sweep {
		if v.LearningRate != nil && !(*v.LearningRate > 0 && finite(*v.LearningRate)) {
			return &FieldError{Field: SweepField(i, "learning_rate"), Reason: "must be a positive number"}
		}
		if v.Units != nil && len(v.Units) == 0 {
			return &FieldError{Field: SweepField(i, "units"), Reason: "give one size per Dense layer, or leave units out"}
		}
		for k, u := range v.Units {
			if u < 1 {
				return &FieldError{Field: SweepField(i, "units"), Reason: fmt.Sprintf("units[%d] is %d: must be at least 1", k, u)}
			}
		}
		if v.Dropout != nil && !(*v.Dropout >= 0 && *v.Dropout < 1) {
			return &FieldError{Field: SweepField(i, "dropout"), Reason: "must be in [0, 1)"}
		}
		if err := s.Variant(i).Validate(); err != nil {
			return InVariant(i, err)
		}
	}
	if err := checkMonitor(s, "sweep_monitor", s.SweepMonitor); err != nil {
		return err
	}
	return checkMode("sweep_mode", s.SweepMode)
}

// checkSweepLimits bounds the variants, and each variant's spec as the job's.
func (s JobSpec) checkSweepLimits(l SpecLimits) error {
	if l.SweepVariants > 0 && len(s.Sweep) > l.SweepVariants {
		return &FieldError{Field: "sweep", Reason: fmt.Sprintf("%d variants is over this coordinator's limit of %d (--max-sweep-variants)", len(s.Sweep), l.SweepVariants)}
	}
	for i := range s.Sweep {
		if err := s.Variant(i).CheckLimits(l); err != nil {
			return InVariant(i, err)
		}
	}
	return nil
}

// withSweepDefaults fills the sweep's monitor: val_loss when the job validates, else loss.
func (s JobSpec) withSweepDefaults() JobSpec {
	if s.Sweep == nil {
		return s
	}
	if s.SweepMonitor == "" {
		s.SweepMonitor = "loss"
		if s.ValidationSplit > 0 {
			s.SweepMonitor = "val_loss"
		}
	}
	if s.SweepMode == "" {
		s.SweepMode = SweepModeAuto
	}
	return s
}

// VariantModelID is the model store's name of variant i's model of a sweep job.
func VariantModelID(jobID string, i int) string { return jobID + "_variant-" + strconv.Itoa(i) }

// VariantDir is variant i's directory under a trainer's out dir: its checkpoint, history
// and models.
func VariantDir(jobID string, i int) string { return jobID + "/variant-" + strconv.Itoa(i) }

// VariantModelDir is where a trainer exports variant i's model, relative to its out dir.
func VariantModelDir(jobID string, i int) string { return VariantDir(jobID, i) + "/model" }

// VariantBestModelDir is where variant i's best epoch's model goes (model_checkpoint); the
// model store holds it as BestModelID(VariantModelID(jobID, i)).
func VariantBestModelDir(jobID string, i int) string { return VariantDir(jobID, i) + "/model-best" }

// MonitorValue is the value of a monitor ("loss", "val_loss", a metric or "val_" a metric)
// in an epoch's result.
func (r EpochResult) MonitorValue(monitor string) (float64, bool) {
	switch {
	case monitor == "loss":
		return r.Loss, true
	case monitor == "val_loss":
		if r.ValLoss == nil {
			return 0, false
		}
		return *r.ValLoss, true
	case len(monitor) > 4 && monitor[:4] == "val_":
		v, ok := r.ValMetrics[monitor[4:]]
		return v, ok
	}
	v, ok := r.Metrics[monitor]
	return v, ok
}
