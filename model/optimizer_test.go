package model

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

// refOptimizer is a float64 transcription of each update rule, as written in Keras 3 (or in
// TF.js for the TF.js forms), for checking the float32 implementation step by step.
type refOptimizer struct {
	cfg        OptimizerConfig
	m, v, mom  []float64
	iterations int
}

func (r *refOptimizer) step(w, g []float64) {
	c := r.cfg
	if r.m == nil {
		r.m, r.v, r.mom = make([]float64, len(w)), make([]float64, len(w)), make([]float64, len(w))
	}
	lr := c.LearningRate
	if c.Schedule != nil {
		lr = c.Schedule.rate(c.LearningRate, int64(r.iterations))
	}
	t := float64(r.iterations + 1)
	if c.ClipNorm > 0 {
		n := 0.0
		for _, x := range g {
			n += x * x
		}
		n = math.Sqrt(n)
		if n > c.ClipNorm {
			for i := range g {
				g[i] *= c.ClipNorm / n
			}
		}
	}
	for i := range w {
		if c.WeightDecay > 0 {
			w[i] -= w[i] * c.WeightDecay * lr
		}
		gi := g[i]
		switch c.Name {
		case OptSGD:
			switch {
			case c.Momentum == 0:
				w[i] -= lr * gi
			case c.TFJSForm:
				r.m[i] = c.Momentum*r.m[i] + gi
				if c.Nesterov {
					w[i] -= lr * (gi + c.Momentum*r.m[i])
				} else {
					w[i] -= lr * r.m[i]
				}
			default:
				r.m[i] = c.Momentum*r.m[i] - lr*gi
				if c.Nesterov {
					w[i] += c.Momentum*r.m[i] - lr*gi
				} else {
					w[i] += r.m[i]
				}
			}
		case OptAdam, OptAdamW:
			r.m[i] += (gi - r.m[i]) * (1 - c.Beta1)
			r.v[i] += (gi*gi - r.v[i]) * (1 - c.Beta2)
			if c.TFJSEpsilon {
				mh := r.m[i] / (1 - math.Pow(c.Beta1, t))
				vh := r.v[i] / (1 - math.Pow(c.Beta2, t))
				w[i] -= lr * mh / (math.Sqrt(vh) + c.Epsilon)
			} else {
				alpha := lr * math.Sqrt(1-math.Pow(c.Beta2, t)) / (1 - math.Pow(c.Beta1, t))
				w[i] -= alpha * r.m[i] / (math.Sqrt(r.v[i]) + c.Epsilon)
			}
		case OptRMSprop:
			r.v[i] = c.Rho*r.v[i] + (1-c.Rho)*gi*gi
			inc := lr * gi / math.Sqrt(r.v[i]+c.Epsilon)
			if c.Momentum > 0 {
				r.mom[i] = c.Momentum*r.mom[i] + inc
				w[i] -= r.mom[i]
			} else {
				w[i] -= inc
			}
		}
	}
	r.iterations++
}

func TestOptimizersMatchReference(t *testing.T) {
	sched := &Schedule{Kind: ScheduleExponential, DecaySteps: 2, DecayRate: 0.5}
	cosine := &Schedule{Kind: ScheduleCosine, DecaySteps: 5, Alpha: 0.1}
	configs := []OptimizerConfig{
		{Name: "sgd", LearningRate: 0.1},
		{Name: "sgd", LearningRate: 0.1, Momentum: 0.9},
		{Name: "sgd", LearningRate: 0.1, Momentum: 0.9, Nesterov: true},
		{Name: "sgd", LearningRate: 0.1, Momentum: 0.9, TFJSForm: true},
		{Name: "sgd", LearningRate: 0.1, Momentum: 0.9, Nesterov: true, TFJSForm: true},
		{Name: "sgd", LearningRate: 0.1, Schedule: sched},
		{Name: "adam", LearningRate: 0.01, Epsilon: 1e-3},
		{Name: "adam", LearningRate: 0.01, Epsilon: 1e-3, TFJSEpsilon: true},
		{Name: "adam", LearningRate: 0.01, Beta1: 0.8, Beta2: 0.99, Schedule: cosine},
		{Name: "adamw", LearningRate: 0.01, WeightDecay: 0.1},
		{Name: "adam", LearningRate: 0.01, ClipNorm: 0.5},
		{Name: "rmsprop", LearningRate: 0.01, Epsilon: 1e-3},
		{Name: "rmsprop", LearningRate: 0.01, Rho: 0.8, Momentum: 0.5},
		{Name: "sgd", LearningRate: 0.1, Momentum: 0.5, WeightDecay: 0.05, ClipNorm: 1},
	}
	for _, cfg := range configs {
		t.Run(fmt.Sprintf("%+v", cfg), func(t *testing.T) {
			if err := cfg.normalize(); err != nil {
				t.Fatal(err)
			}
			o := newOptimizer(cfg)
			p := newParam("w", true, 5)
			copy(p.w, []float32{0.5, -0.3, 1.2, 0, -2})
			o.initSlots([]*param{p})
			ref := &refOptimizer{cfg: cfg}
			w := []float64{0.5, -0.3, 1.2, 0, -2}
			for step := 0; step < 7; step++ {
				g := make([]float64, 5)
				for i := range g {
					g[i] = math.Sin(float64(3*step+i)) * float64(i+1) / 3
					p.g[i] = float32(g[i])
					g[i] = float64(p.g[i])
				}
				o.apply([]*param{p})
				ref.step(w, g)
				for i := range w {
					if d := math.Abs(float64(p.w[i]) - w[i]); d > 2e-6*math.Max(1, math.Abs(w[i])) {
						t.Fatalf("step %d: w[%d] = %.9g, reference %.9g", step, i, p.w[i], w[i])
					}
				}
			}
			if o.iterations != 7 {
				t.Errorf("iterations %d", o.iterations)
			}
		})
	}
}

func TestCompileValidation(t *testing.T) {
	tests := []struct {
		name    string
		c       Compile
		wantErr string
	}{
		{name: "defaults", c: Compile{Loss: "MeanSquaredError", Metrics: []string{"rmse", "mae"}}},
		{name: "missing loss", c: Compile{}, wantErr: "loss is missing"},
		{name: "unknown loss", c: Compile{Loss: "poisson"}, wantErr: `unsupported loss "poisson"`},
		{name: "unknown metric", c: Compile{Loss: "mse", Metrics: []string{"auc"}}, wantErr: `unsupported metric "auc"`},
		{name: "duplicate metric", c: Compile{Loss: "mse", Metrics: []string{"mae", "mae"}}, wantErr: `duplicate metric "mae"`},
		{name: "logits with mse", c: Compile{Loss: "mse", FromLogits: true}, wantErr: "from_logits applies to crossentropy"},
		{name: "unknown optimizer", c: Compile{Loss: "mse", Optimizer: OptimizerConfig{Name: "adagrad"}}, wantErr: `unsupported optimizer "adagrad"`},
		{name: "bad momentum", c: Compile{Loss: "mse", Optimizer: OptimizerConfig{Name: "sgd", Momentum: 1.5}}, wantErr: "momentum must be in [0, 1)"},
		{name: "nesterov adam", c: Compile{Loss: "mse", Optimizer: OptimizerConfig{Name: "adam", Nesterov: true}}, wantErr: "nesterov applies to sgd only"},
		{name: "bad schedule", c: Compile{Loss: "mse", Optimizer: OptimizerConfig{Schedule: &Schedule{Kind: ScheduleExponential}}}, wantErr: "decay_steps must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if tt.c.Loss != LossMSE || tt.c.Optimizer.Name != OptAdam || tt.c.Optimizer.LearningRate != 0.001 || tt.c.Optimizer.Epsilon != 1e-7 {
					t.Errorf("defaults not filled: %+v", tt.c)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
		})
	}
}
