package model

import (
	"fmt"
	"math"
)

// SizeLimits bound the size of a model, checked on the spec alone before anything is
// allocated. Zero means no bound.
type SizeLimits struct {
	Layers int
	// Units bounds the units of each dense layer.
	Units int
	// Params bounds the parameters of the whole model, as Keras counts them (a float32 each;
	// the optimizer keeps up to two more per parameter).
	Params int64
}

// ParamCount is the number of parameters the model of s has on inputDim features, as Keras
// counts them (batch normalization's moving statistics included). It allocates nothing and
// saturates at math.MaxInt64.
func (s *Spec) ParamCount(inputDim int) int64 {
	var total int64
	width := int64(max(inputDim, 0))
	for _, l := range s.Layers {
		switch l.Type {
		case LayerDense:
			units := int64(max(l.Units, 0))
			n := satMul(width, units)
			if l.UseBias {
				n = satAdd(n, units)
			}
			total = satAdd(total, n)
			width = units
		case LayerBatchNorm:
			total = satAdd(total, satMul(width, 4))
		}
	}
	return total
}

// CheckSize refuses a model over the limits, naming the layer at fault. Call it before New,
// which allocates the weights.
func (s *Spec) CheckSize(inputDim int, l SizeLimits) error {
	if l.Layers > 0 && len(s.Layers) > l.Layers {
		return &SpecError{Index: -1, Reason: fmt.Sprintf("%d layers, over this coordinator's limit of %d", len(s.Layers), l.Layers)}
	}
	if l.Units > 0 {
		for i, layer := range s.Layers {
			if layer.Type == LayerDense && layer.Units > l.Units {
				return &SpecError{Index: i, Name: layer.Name, Reason: fmt.Sprintf("%d units, over this coordinator's limit of %d per layer", layer.Units, l.Units)}
			}
		}
	}
	if l.Params > 0 && inputDim > 0 {
		if n := s.ParamCount(inputDim); n > l.Params {
			return &SpecError{Index: -1, Reason: fmt.Sprintf("%d parameters on %d input features, over this coordinator's limit of %d", n, inputDim, l.Params)}
		}
	}
	return nil
}

func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

func satMul(a, b int64) int64 {
	if a != 0 && b > math.MaxInt64/a {
		return math.MaxInt64
	}
	return a * b
}
