package messages

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func sweepSpec(sweep string) string {
	return controlsSpec(`, "seed": 5, "optimizer": {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9}, "sweep": ` + sweep)
}

func TestSweepVariantSpecs(t *testing.T) {
	s, err := ParseJobSpec([]byte(sweepSpec(`[{}, {"learning_rate": 0.01, "seed": 8}, {"optimizer": {"learning_rate": 0.2}, "units": [3], "dropout": 0.25}]`)))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Sweep) != 3 || s.SweepMonitor != "val_loss" || s.SweepMode != SweepModeAuto {
		t.Fatalf("sweep %+v monitor %q mode %q", s.Sweep, s.SweepMonitor, s.SweepMode)
	}
	v0, v1, v2 := s.Variant(0), s.Variant(1), s.Variant(2)
	if v0.Sweep != nil || v0.SweepMonitor != "" || v0.Optimizer != s.Optimizer || v0.Seed != 5 {
		t.Fatalf("variant 0 (no overrides) is not the job's spec: %+v", v0)
	}
	if v1.Optimizer.Name != "sgd" || v1.Optimizer.Momentum != 0.9 || v1.Optimizer.LearningRate != 0.01 || v1.Seed != 8 {
		t.Fatalf("variant 1: optimizer %+v seed %d", v1.Optimizer, v1.Seed)
	}
	// A variant's optimizer replaces the job's as a whole (Keras's default, adam).
	if v2.Optimizer != (OptimizerSpec{Name: "adam", LearningRate: 0.2}) {
		t.Fatalf("variant 2: optimizer %+v", v2.Optimizer)
	}
	for i := range s.Sweep {
		if err := s.Variant(i).Validate(); err != nil {
			t.Fatalf("variant %d: %v", i, err)
		}
	}
	// A variant reads the ranges in its own seed's order, as it would alone; one without a
	// seed in the job's.
	p := &Plan{JobID: "j", Spec: s, Ranges: make([]KeyRange, 12), ValidationRanges: 2}
	for i := range p.Ranges {
		p.Ranges[i].Index = i
	}
	vp := p.ForVariant(1)
	if vp.Spec.Seed != 8 || vp.Variant == nil || vp.Variant.Index != 1 || vp.Variant.Overrides.Seed == nil {
		t.Fatalf("variant plan: seed %d, variant %+v", vp.Spec.Seed, vp.Variant)
	}
	alone := &Plan{Spec: v1, Ranges: p.Ranges, ValidationRanges: 2}
	for e := range 3 {
		if !slices.Equal(vp.EpochOrder(e), alone.EpochOrder(e)) {
			t.Fatalf("epoch %d: variant order %v, alone %v", e, vp.EpochOrder(e), alone.EpochOrder(e))
		}
		if v0 := p.ForVariant(0); !slices.Equal(v0.EpochOrder(e), p.EpochOrder(e)) {
			t.Fatalf("epoch %d: variant 0 (no seed) order %v, job order %v", e, v0.EpochOrder(e), p.EpochOrder(e))
		}
	}
	if slices.Equal(alone.EpochOrder(0), p.EpochOrder(0)) {
		t.Fatal("seed 8 orders the ranges as seed 5 does: the test cannot tell the orders apart")
	}
	// The stored plan keeps the sweep; a variant's own fields are never stored.
	b, err := EncodePlan(vp)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodePlan(b)
	if err != nil {
		t.Fatal(err)
	}
	if back.Variant != nil {
		t.Fatalf("a decoded plan has a variant: %+v", back.Variant)
	}
	b, err = EncodePlan(p)
	if err != nil {
		t.Fatal(err)
	}
	if back, err = DecodePlan(b); err != nil || len(back.Spec.Sweep) != 3 || *back.Spec.Sweep[2].Dropout != 0.25 || back.Spec.SweepMonitor != "val_loss" {
		t.Fatalf("plan round trip: %+v, %v", back.Spec.Sweep, err)
	}
}

func TestSweepErrorsNameTheVariant(t *testing.T) {
	tests := []struct {
		name, spec, field, msg string
	}{
		{"empty", sweepSpec(`[]`), "sweep", "at least one variant"},
		{"not a list", sweepSpec(`{"seed": 1}`), "sweep", "list of variants"},
		{"unknown field", sweepSpec(`[{}, {"seed": 1, "features": []}]`), "sweep[1]", `unknown field "features"`},
		{"wrong type", sweepSpec(`[{"units": "big"}]`), "sweep[0]", "units"},
		{"units", sweepSpec(`[{"units": [4, 0]}]`), "sweep[0].units", "units[1] is 0"},
		{"no units", sweepSpec(`[{"units": []}]`), "sweep[0].units", "one size per Dense layer"},
		{"dropout", sweepSpec(`[{"dropout": 1}]`), "sweep[0].dropout", "[0, 1)"},
		{"learning rate", sweepSpec(`[{}, {}, {"learning_rate": 0}]`), "sweep[2].learning_rate", "positive"},
		{"a variant's schedule", sweepSpec(`[{"optimizer": {"schedule": {"class_name": "Nope"}}}]`), "sweep[0].optimizer.schedule.class_name", "Nope"},
		{"a variant's schedule with reduce_lr_on_plateau",
			controlsSpec(`, "reduce_lr_on_plateau": {}, "sweep": [{"optimizer": {"schedule": {"class_name": "ExponentialDecay", "config": {"initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.9}}}}]`),
			"sweep[0].reduce_lr_on_plateau", "schedule"},
		{"a valid sweep", sweepSpec(`[{}]`), "", ""},
		{"unknown monitor", controlsSpec(`, "sweep": [{}], "sweep_monitor": "val_nope"`), "sweep_monitor", "val_nope"},
		{"mode", controlsSpec(`, "sweep": [{}], "sweep_mode": "lowest"`), "sweep_mode", "lowest"},
		{"mode without sweep", controlsSpec(`, "sweep_mode": "min"`), "sweep_mode", "needs sweep"},
		{"tensorflow", controlsSpec(`, "backend": "tensorflow", "sweep": [{}]`), "sweep", "go backend"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseJobSpec([]byte(tt.spec))
			if tt.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field || !strings.Contains(fe.Reason, tt.msg) {
				t.Fatalf("got %v; want field %s saying %q", err, tt.field, tt.msg)
			}
		})
	}
	l := SpecLimits{SweepVariants: 2, ScheduleBoundaries: 1}
	s, err := ParseJobSpec([]byte(sweepSpec(`[{}, {}, {}]`)))
	if err != nil {
		t.Fatal(err)
	}
	var fe *FieldError
	if err := s.CheckLimits(l); !errors.As(err, &fe) || fe.Field != "sweep" || !strings.Contains(fe.Reason, "limit of 2") {
		t.Fatalf("3 variants over a limit of 2: %v", err)
	}
	s, err = ParseJobSpec([]byte(sweepSpec(`[{}, {"optimizer": {"schedule": {"class_name": "PiecewiseConstantDecay", "config": {"boundaries": [1, 2], "values": [0.3, 0.2, 0.1]}}}}]`)))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CheckLimits(l); !errors.As(err, &fe) || fe.Field != "sweep[1].optimizer.schedule.config.boundaries" {
		t.Fatalf("a variant's schedule over the limit: %v", err)
	}
}

func FuzzSweepVariants(f *testing.F) {
	f.Add([]byte(`[{}, {"learning_rate": 0.01, "units": [4, 1], "dropout": 0.2, "seed": 3, "optimizer": {"name": "sgd"}}]`))
	f.Add([]byte(`[{"units": null}]`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseJobSpec([]byte(sweepSpec(string(data))))
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field == "" {
				t.Fatalf("error without a field: %v", err)
			}
			return
		}
		for i := range s.Sweep {
			if err := s.Variant(i).Validate(); err != nil {
				t.Fatalf("variant %d of a parsed sweep does not validate: %v", i, err)
			}
		}
	})
}
