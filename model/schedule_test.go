package model

import (
	"math"
	"testing"

	"pgtrain/messages"
)

func ptr[T any](v T) *T { return &v }

func TestSchedules(t *testing.T) {
	tests := []struct {
		name string
		s    Schedule
		step int64
		want float64
	}{
		{"exponential start", Schedule{Kind: ScheduleExponential, DecaySteps: 10, DecayRate: 0.5}, 0, 0.1},
		{"exponential smooth", Schedule{Kind: ScheduleExponential, DecaySteps: 10, DecayRate: 0.5}, 5, 0.1 * math.Sqrt(0.5)},
		{"exponential staircase", Schedule{Kind: ScheduleExponential, DecaySteps: 10, DecayRate: 0.5, Staircase: true}, 15, 0.05},
		{"exponential own initial", Schedule{Kind: ScheduleExponential, DecaySteps: 10, DecayRate: 0.5, InitialLearningRate: 1}, 10, 0.5},
		{"inverse time", Schedule{Kind: ScheduleInverseTime, DecaySteps: 10, DecayRate: 0.5}, 20, 0.05},
		{"inverse time smooth", Schedule{Kind: ScheduleInverseTime, DecaySteps: 10, DecayRate: 0.5}, 5, 0.08},
		{"inverse time staircase", Schedule{Kind: ScheduleInverseTime, DecaySteps: 10, DecayRate: 0.5, Staircase: true}, 19, 0.1 / 1.5},
		{"piecewise first", Schedule{Kind: SchedulePiecewise, Boundaries: []float64{10, 20}, Values: []float64{1, 0.5, 0.1}}, 10, 1},
		{"piecewise middle", Schedule{Kind: SchedulePiecewise, Boundaries: []float64{10, 20}, Values: []float64{1, 0.5, 0.1}}, 11, 0.5},
		{"piecewise last", Schedule{Kind: SchedulePiecewise, Boundaries: []float64{10, 20}, Values: []float64{1, 0.5, 0.1}}, 21, 0.1},
		{"cosine start", Schedule{Kind: ScheduleCosine, DecaySteps: 100}, 0, 0.1},
		{"cosine half", Schedule{Kind: ScheduleCosine, DecaySteps: 100}, 50, 0.05},
		{"cosine end with alpha", Schedule{Kind: ScheduleCosine, DecaySteps: 100, Alpha: 0.2}, 500, 0.02},
		{"cosine warmup", Schedule{Kind: ScheduleCosine, DecaySteps: 100, WarmupSteps: 10, WarmupTarget: ptr(1.0)}, 5, 0.55},
		{"cosine after warmup", Schedule{Kind: ScheduleCosine, DecaySteps: 100, WarmupSteps: 10, WarmupTarget: ptr(1.0)}, 60, 0.5},
		{"cosine past warmup and decay", Schedule{Kind: ScheduleCosine, DecaySteps: 100, WarmupSteps: 10, WarmupTarget: ptr(1.0), Alpha: 0.1}, 1000, 0.1},
		// Keras 3: a warmup_target without warm-up steps decays from the target.
		{"cosine target without warmup", Schedule{Kind: ScheduleCosine, DecaySteps: 100, WarmupTarget: ptr(1.0)}, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.s.check(); err != nil {
				t.Fatal(err)
			}
			if got := tt.s.rate(0.1, tt.step); math.Abs(got-tt.want) > 1e-12 {
				t.Errorf("rate at %d = %v, want %v", tt.step, got, tt.want)
			}
		})
	}
}

// kerasReference is Keras 3's schedules written out as keras/src/optimizers/schedules
// states them, step by step in float64, for comparison with the engine over many steps.
func kerasReference(s messages.ScheduleSpec, step float64) float64 {
	c := s.Config
	switch s.ClassName {
	case messages.ScheduleExponentialDecay:
		p := step / float64(c.DecaySteps)
		if c.Staircase {
			p = math.Floor(p)
		}
		return c.InitialLearningRate * math.Pow(c.DecayRate, p)
	case messages.ScheduleInverseTimeDecay:
		p := step / float64(c.DecaySteps)
		if c.Staircase {
			p = math.Floor(p)
		}
		return c.InitialLearningRate / (1 + c.DecayRate*p)
	case messages.SchedulePiecewiseConstantDecay:
		if step <= c.Boundaries[0] {
			return c.Values[0]
		}
		if step > c.Boundaries[len(c.Boundaries)-1] {
			return c.Values[len(c.Values)-1]
		}
		for i := 1; i < len(c.Boundaries); i++ {
			if step > c.Boundaries[i-1] && step <= c.Boundaries[i] {
				return c.Values[i]
			}
		}
	case messages.ScheduleCosineDecay:
		decay := func(step, from float64) float64 {
			frac := step / float64(c.DecaySteps)
			cos := 0.5 * (1.0 + math.Cos(math.Pi*frac))
			return from * ((1-c.Alpha)*cos + c.Alpha)
		}
		if c.WarmupTarget == nil {
			return decay(math.Min(step, float64(c.DecaySteps)), c.InitialLearningRate)
		}
		g := math.Min(step, float64(c.DecaySteps+c.WarmupSteps))
		if g < float64(c.WarmupSteps) {
			return (*c.WarmupTarget-c.InitialLearningRate)*(g/float64(c.WarmupSteps)) + c.InitialLearningRate
		}
		return decay(g-float64(c.WarmupSteps), *c.WarmupTarget)
	}
	panic("no reference for " + s.ClassName)
}

// The optimizer's rate, step after step, is the reference's to float64 rounding: the schedule
// comes from the job spec as a Keras serialized schedule.
func TestScheduleFromSpecAgainstReference(t *testing.T) {
	specs := []messages.ScheduleSpec{
		{ClassName: "ExponentialDecay", Config: messages.ScheduleConfig{InitialLearningRate: 0.01, DecaySteps: 7, DecayRate: 0.8}},
		{ClassName: "ExponentialDecay", Config: messages.ScheduleConfig{InitialLearningRate: 0.01, DecaySteps: 7, DecayRate: 0.8, Staircase: true}},
		{ClassName: "InverseTimeDecay", Config: messages.ScheduleConfig{InitialLearningRate: 0.05, DecaySteps: 3, DecayRate: 0.25}},
		{ClassName: "InverseTimeDecay", Config: messages.ScheduleConfig{InitialLearningRate: 0.05, DecaySteps: 3, DecayRate: 0.25, Staircase: true}},
		{ClassName: "PiecewiseConstantDecay", Config: messages.ScheduleConfig{Boundaries: []float64{5, 12, 30}, Values: []float64{0.1, 0.05, 0.01, 0.001}}},
		{ClassName: "CosineDecay", Config: messages.ScheduleConfig{InitialLearningRate: 0.02, DecaySteps: 40, Alpha: 0.1}},
		{ClassName: "CosineDecay", Config: messages.ScheduleConfig{InitialLearningRate: 1e-4, DecaySteps: 40, WarmupTarget: ptr(0.1), WarmupSteps: 8}},
		{ClassName: "CosineDecay", Config: messages.ScheduleConfig{InitialLearningRate: 0.001, DecaySteps: 40, Alpha: 0.05, WarmupTarget: ptr(0.01), WarmupSteps: 5}},
	}
	for _, sc := range specs {
		t.Run(sc.ClassName, func(t *testing.T) {
			m := mustModel(t, sc)
			for step := int64(0); step < 60; step++ {
				m.opt.iterations = step
				want := kerasReference(sc, float64(step))
				if got := m.LearningRate(); math.Abs(got-want) > 1e-15*math.Max(1, want) {
					t.Fatalf("step %d: rate %v, Keras formula %v", step, got, want)
				}
			}
		})
	}
}

func mustModel(t *testing.T, sc messages.ScheduleSpec) *Sequential {
	t.Helper()
	spec, err := ParseSpec([]byte(`{"layers":[{"type":"dense","units":1}]}`))
	if err != nil {
		t.Fatal(err)
	}
	js := messages.JobSpec{Loss: "mse", Optimizer: messages.OptimizerSpec{Name: "sgd", Schedule: &sc}}
	m, err := New(spec, 2, CompileOf(js), 1)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// ReduceLROnPlateau sets the rate of a constant-rate optimizer; one with a schedule refuses.
func TestSetLearningRate(t *testing.T) {
	spec, err := ParseSpec([]byte(`{"layers":[{"type":"dense","units":1}]}`))
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(spec, 2, Compile{Loss: "mse", Optimizer: OptimizerConfig{Name: "sgd"}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetLearningRate(0.001); err != nil {
		t.Fatal(err)
	}
	if m.LearningRate() != 0.001 {
		t.Fatalf("rate %v after setting 0.001", m.LearningRate())
	}
	if err := m.SetLearningRate(-1); err == nil {
		t.Fatal("a negative rate was accepted")
	}
	sm := mustModel(t, messages.ScheduleSpec{ClassName: "ExponentialDecay", Config: messages.ScheduleConfig{InitialLearningRate: 0.1, DecaySteps: 1, DecayRate: 0.5}})
	if err := sm.SetLearningRate(0.01); err == nil {
		t.Fatal("a scheduled rate was set")
	}
}
