// Package compile maps a job spec onto the model engine's compile settings. Every backend,
// and the coordinator's check at submission, goes through it, so a spec means one thing.
package compile

import (
	"pgtrain/messages"
	"pgtrain/model"
)

// Optimizer maps a job spec's optimizer onto the engine's settings.
func Optimizer(o messages.OptimizerSpec) model.OptimizerConfig {
	return model.OptimizerConfig{
		Name: o.Name, LearningRate: o.LearningRate, Momentum: o.Momentum, Nesterov: o.Nesterov,
		Beta1: o.Beta1, Beta2: o.Beta2, Epsilon: o.Epsilon, Rho: o.Rho,
		WeightDecay: o.WeightDecay, ClipNorm: o.ClipNorm,
	}
}

// Config maps a job spec's optimizer, loss and metrics onto the engine's settings.
func Config(s messages.JobSpec) model.Compile {
	return model.Compile{
		Optimizer:  Optimizer(s.Optimizer),
		Loss:       s.Loss,
		FromLogits: s.FromLogits,
		Metrics:    s.Metrics,
	}
}
