package model

import (
	"math"
)

// SELU constants, as in Keras.
const (
	seluLambda = 1.0507009873554805
	seluAlpha  = 1.6732632423543772
)

// activation applies one activation function forward and backward over a rows×dim block.
// The forward pass writes y (it may alias z); backward turns dy into dz in place and needs
// z only for the functions whose derivative is not a function of y (gelu, swish).
type activation struct {
	name  string
	alpha float32 // leaky relu slope
}

// elementwise reports whether each output depends on its own input alone (all but softmax),
// so that any block of values can be activated on its own.
func (a activation) elementwise() bool { return a.name != ActSoftmax }

// needsPre reports whether backward needs the pre-activation values.
func (a activation) needsPre() bool { return a.name == ActGELU || a.name == ActSwish }

func sigmoid32(x float32) float32 {
	// 1/(1+e^-x), computed in float64 and rounded once.
	return float32(1 / (1 + math.Exp(-float64(x))))
}

// forward computes y = f(z) for rows×dim values.
func (a activation) forward(z, y []float32, rows, dim int) {
	n := rows * dim
	z, y = z[:n], y[:n]
	switch a.name {
	case ActLinear:
		if &z[0] != &y[0] {
			copy(y, z)
		}
	case ActReLU:
		// Branch-free: clear every value whose sign bit is set (signs are random, so a
		// branch would mispredict half the time).
		for i, v := range z {
			b := math.Float32bits(v)
			y[i] = math.Float32frombits(b &^ uint32(int32(b)>>31))
		}
	case ActSigmoid:
		for i, v := range z {
			y[i] = sigmoid32(v)
		}
	case ActTanh:
		for i, v := range z {
			y[i] = float32(math.Tanh(float64(v)))
		}
	case ActELU:
		for i, v := range z {
			if v > 0 {
				y[i] = v
			} else {
				y[i] = float32(math.Expm1(float64(v)))
			}
		}
	case ActSELU:
		for i, v := range z {
			if v > 0 {
				y[i] = float32(seluLambda * float64(v))
			} else {
				y[i] = float32(seluLambda * seluAlpha * math.Expm1(float64(v)))
			}
		}
	case ActGELU:
		for i, v := range z {
			x := float64(v)
			y[i] = float32(0.5 * x * (1 + math.Erf(x/math.Sqrt2)))
		}
	case ActSwish:
		for i, v := range z {
			x := float64(v)
			y[i] = float32(x / (1 + math.Exp(-x)))
		}
	case ActLeakyReLU:
		s := a.alpha
		for i, v := range z {
			if v > 0 {
				y[i] = v
			} else {
				y[i] = v * s
			}
		}
	case ActSoftmax:
		for r := 0; r < rows; r++ {
			zr, yr := z[r*dim:(r+1)*dim], y[r*dim:(r+1)*dim]
			m := zr[0]
			for _, v := range zr[1:] {
				m = max(m, v)
			}
			var sum float32
			for j, v := range zr {
				e := float32(math.Exp(float64(v - m)))
				yr[j] = e
				sum += e
			}
			for j := range yr {
				yr[j] /= sum
			}
		}
	default:
		panic("model: unknown activation " + a.name)
	}
}

// backward turns dy into dL/dz in place, given y = f(z) (and z when needsPre).
func (a activation) backward(dy, y, z []float32, rows, dim int) {
	n := rows * dim
	dy, y = dy[:n], y[:n]
	switch a.name {
	case ActLinear:
	case ActReLU:
		// dy where y > 0, else 0, branch-free: y's bits minus one are negative as an int32
		// exactly when y is +0 or negative.
		for i, v := range y {
			zero := uint32(int32(math.Float32bits(v)-1) >> 31)
			dy[i] = math.Float32frombits(math.Float32bits(dy[i]) &^ zero)
		}
	case ActSigmoid:
		for i, v := range y {
			dy[i] *= v * (1 - v)
		}
	case ActTanh:
		for i, v := range y {
			dy[i] *= 1 - v*v
		}
	case ActELU:
		for i, v := range y {
			if !(v > 0) {
				dy[i] *= v + 1
			}
		}
	case ActSELU:
		for i, v := range y {
			if v > 0 {
				dy[i] *= seluLambda
			} else {
				dy[i] *= v + float32(seluLambda*seluAlpha)
			}
		}
	case ActGELU:
		for i, v := range z[:n] {
			x := float64(v)
			cdf := 0.5 * (1 + math.Erf(x/math.Sqrt2))
			pdf := math.Exp(-0.5*x*x) / math.Sqrt(2*math.Pi)
			dy[i] *= float32(cdf + x*pdf)
		}
	case ActSwish:
		for i, v := range z[:n] {
			x := float64(v)
			s := 1 / (1 + math.Exp(-x))
			dy[i] *= float32(s * (1 + x*(1-s)))
		}
	case ActLeakyReLU:
		s := a.alpha
		for i, v := range y {
			if !(v > 0) {
				dy[i] *= s
			}
		}
	case ActSoftmax:
		// dz = y⊙dy − y·Σ(y⊙dy), per row.
		for r := 0; r < rows; r++ {
			dr, yr := dy[r*dim:(r+1)*dim], y[r*dim:(r+1)*dim]
			var s float32
			for j, v := range yr {
				dr[j] *= v
				s += dr[j]
			}
			for j, v := range yr {
				dr[j] -= s * v
			}
		}
	default:
		panic("model: unknown activation " + a.name)
	}
}
