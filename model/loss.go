package model

import (
	"fmt"
	"math"
)

// lossEpsilon is Keras's backend epsilon, used to clip probabilities.
const lossEpsilon = 1e-7

// lossFn computes a batch loss with Keras's sum_over_batch_size reduction (the mean over the
// batch of per-sample losses) and its gradient with respect to the model output.
type lossFn struct {
	name       string
	fromLogits bool
	delta      float32 // Huber
}

func newLossFn(name string, fromLogits bool, delta float32) lossFn {
	return lossFn{name: name, fromLogits: fromLogits, delta: delta}
}

// labelDim is the width of one row of y: the output width, or 1 for sparse labels.
func (l *lossFn) labelDim(outDim int) int {
	if l.name == LossSparseCategoricalCE {
		return 1
	}
	return outDim
}

// checkLabels validates sparse class indices.
func (l *lossFn) checkLabels(y []float32, rows, outDim int) error {
	if l.name != LossSparseCategoricalCE {
		return nil
	}
	return CheckSparseLabels(y[:rows], outDim)
}

// CheckSparseLabels refuses sparse categorical labels (one per row) that are not class
// indices in [0, classes): the one-hot row of such a label is all zeros, so a model would
// train on it silently, towards nothing.
func CheckSparseLabels(y []float32, classes int) error {
	for i, v := range y {
		if v < 0 || int(v) >= classes || v != float32(math.Trunc(float64(v))) {
			return fmt.Errorf("row %d: sparse label %v is not a class index in [0, %d)", i, v, classes)
		}
	}
	return nil
}

// eval returns the mean loss over rows, and, when grad is not nil, writes dL/dpred into it
// (rows×dim), the mean's 1/rows included.
func (l *lossFn) eval(pred, y []float32, rows, dim int, grad []float32) float64 {
	var total float64
	invB := float32(1) / float32(rows)
	switch l.name {
	case LossMSE, LossMAE, LossHuber:
		scale := invB / float32(dim)
		d := float64(l.delta)
		for r := 0; r < rows; r++ {
			var s float64
			for j := 0; j < dim; j++ {
				i := r*dim + j
				e := pred[i] - y[i]
				ef := float64(e)
				switch l.name {
				case LossMSE:
					s += ef * ef
					if grad != nil {
						grad[i] = 2 * e * scale
					}
				case LossMAE:
					s += math.Abs(ef)
					if grad != nil {
						grad[i] = sign32(e) * scale
					}
				case LossHuber:
					if math.Abs(ef) <= d {
						s += 0.5 * ef * ef
						if grad != nil {
							grad[i] = e * scale
						}
					} else {
						s += d*math.Abs(ef) - 0.5*d*d
						if grad != nil {
							grad[i] = l.delta * sign32(e) * scale
						}
					}
				}
			}
			total += s / float64(dim)
		}
	case LossBinaryCrossentropy:
		scale := invB / float32(dim)
		for r := 0; r < rows; r++ {
			var s float64
			for j := 0; j < dim; j++ {
				i := r*dim + j
				t := float64(y[i])
				if l.fromLogits {
					x := float64(pred[i])
					s += math.Max(x, 0) - x*t + math.Log1p(math.Exp(-math.Abs(x)))
					if grad != nil {
						grad[i] = (sigmoid32(pred[i]) - y[i]) * scale
					}
					continue
				}
				p := pred[i]
				pc := min(max(p, float32(lossEpsilon)), float32(1-lossEpsilon))
				pf := float64(pc)
				s -= t*math.Log(pf) + (1-t)*math.Log(1-pf)
				if grad != nil {
					if p < float32(lossEpsilon) || p > float32(1-lossEpsilon) {
						grad[i] = 0 // the clip passes no gradient
					} else {
						grad[i] = float32((pf-t)/(pf*(1-pf))) * scale
					}
				}
			}
			total += s / float64(dim)
		}
	case LossCategoricalCE, LossSparseCategoricalCE:
		sparse := l.name == LossSparseCategoricalCE
		ydim := dim
		if sparse {
			ydim = 1
		}
		for r := 0; r < rows; r++ {
			pr := pred[r*dim : (r+1)*dim]
			yr := y[r*ydim : (r+1)*ydim]
			target := func(j int) float64 {
				if sparse {
					if int(yr[0]) == j {
						return 1
					}
					return 0
				}
				return float64(yr[j])
			}
			var gr []float32
			if grad != nil {
				gr = grad[r*dim : (r+1)*dim]
			}
			if l.fromLogits {
				m := float64(pr[0])
				for _, v := range pr[1:] {
					m = math.Max(m, float64(v))
				}
				var se float64
				for _, v := range pr {
					se += math.Exp(float64(v) - m)
				}
				lse := m + math.Log(se)
				var s, ysum float64
				for j, v := range pr {
					t := target(j)
					s -= t * (float64(v) - lse)
					ysum += t
				}
				total += s
				if gr != nil {
					for j, v := range pr {
						p := math.Exp(float64(v) - lse)
						gr[j] = float32(p*ysum-target(j)) * invB
					}
				}
				continue
			}
			// Probabilities: normalise to sum 1, clip, −Σ y·log p.
			var sum float64
			for _, v := range pr {
				sum += float64(v)
			}
			var s, gq float64
			for j, v := range pr {
				q := float64(v) / sum
				qc := math.Min(math.Max(q, lossEpsilon), 1-lossEpsilon)
				t := target(j)
				if t != 0 {
					s -= t * math.Log(qc)
				}
				if gr != nil {
					// dℓ/dq, zero where the clip is active.
					g := 0.0
					if q >= lossEpsilon && q <= 1-lossEpsilon {
						g = -t / q
					}
					gr[j] = float32(g)
					gq += g * q
				}
			}
			total += s
			// Through the normalisation: dℓ/dp_m = (g_m − Σ g_k q_k) / Σp.
			for j := range gr {
				gr[j] = float32((float64(gr[j])-gq)/sum) * invB
			}
		}
	default:
		panic("model: unknown loss " + l.name)
	}
	return total / float64(rows)
}

func sign32(x float32) float32 {
	switch {
	case x > 0:
		return 1
	case x < 0:
		return -1
	}
	return 0
}
