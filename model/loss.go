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
	name string
	batchLoss
}

// batchLoss is one loss: the sum over the batch of its per-sample losses of pred against y
// and, when grad is not nil, dL/dpred (rows×dim) of the batch mean, its 1/rows included. Each
// loss runs its own loop, so the hot loop does not dispatch on the loss per element.
type batchLoss interface {
	sum(pred, y []float32, rows, dim int, grad []float32) float64
}

func newLossFn(name string, fromLogits bool, delta float32) lossFn {
	l := lossFn{name: name}
	switch name {
	case LossMSE:
		l.batchLoss = mseLoss{}
	case LossMAE:
		l.batchLoss = maeLoss{}
	case LossHuber:
		l.batchLoss = huberLoss{delta: delta}
	case LossBinaryCrossentropy:
		l.batchLoss = binaryCE{}
		if fromLogits {
			l.batchLoss = binaryCELogits{}
		}
	case LossCategoricalCE, LossSparseCategoricalCE:
		t := classTargets{sparse: name == LossSparseCategoricalCE}
		l.batchLoss = categoricalCE{t}
		if fromLogits {
			l.batchLoss = categoricalCELogits{t}
		}
	default:
		panic("model: unknown loss " + name)
	}
	return l
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
	return l.sum(pred, y, rows, dim, grad) / float64(rows)
}

// The element-wise losses are the mean over a row's outputs.

type mseLoss struct{}

func (mseLoss) sum(pred, y []float32, rows, dim int, grad []float32) float64 {
	var total float64
	scale := float32(1) / float32(rows) / float32(dim)
	for r := 0; r < rows; r++ {
		var s float64
		for i := r * dim; i < (r+1)*dim; i++ {
			e := pred[i] - y[i]
			ef := float64(e)
			s += ef * ef
			if grad != nil {
				grad[i] = 2 * e * scale
			}
		}
		total += s / float64(dim)
	}
	return total
}

type maeLoss struct{}

func (maeLoss) sum(pred, y []float32, rows, dim int, grad []float32) float64 {
	var total float64
	scale := float32(1) / float32(rows) / float32(dim)
	for r := 0; r < rows; r++ {
		var s float64
		for i := r * dim; i < (r+1)*dim; i++ {
			e := pred[i] - y[i]
			s += math.Abs(float64(e))
			if grad != nil {
				grad[i] = sign32(e) * scale
			}
		}
		total += s / float64(dim)
	}
	return total
}

// huberLoss is quadratic within delta of the target and linear beyond.
type huberLoss struct{ delta float32 }

func (h huberLoss) sum(pred, y []float32, rows, dim int, grad []float32) float64 {
	var total float64
	scale := float32(1) / float32(rows) / float32(dim)
	d := float64(h.delta)
	for r := 0; r < rows; r++ {
		var s float64
		for i := r * dim; i < (r+1)*dim; i++ {
			e := pred[i] - y[i]
			ef := float64(e)
			if math.Abs(ef) <= d {
				s += 0.5 * ef * ef
				if grad != nil {
					grad[i] = e * scale
				}
			} else {
				s += d*math.Abs(ef) - 0.5*d*d
				if grad != nil {
					grad[i] = h.delta * sign32(e) * scale
				}
			}
		}
		total += s / float64(dim)
	}
	return total
}

// binaryCE takes probabilities, clipped to [ε, 1−ε] as Keras does.
type binaryCE struct{}

func (binaryCE) sum(pred, y []float32, rows, dim int, grad []float32) float64 {
	var total float64
	scale := float32(1) / float32(rows) / float32(dim)
	for r := 0; r < rows; r++ {
		var s float64
		for i := r * dim; i < (r+1)*dim; i++ {
			t := float64(y[i])
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
	return total
}

// binaryCELogits takes logits, in the overflow-free form max(x, 0) − x·t + log(1 + e^−|x|).
type binaryCELogits struct{}

func (binaryCELogits) sum(pred, y []float32, rows, dim int, grad []float32) float64 {
	var total float64
	scale := float32(1) / float32(rows) / float32(dim)
	for r := 0; r < rows; r++ {
		var s float64
		for i := r * dim; i < (r+1)*dim; i++ {
			t := float64(y[i])
			x := float64(pred[i])
			s += math.Max(x, 0) - x*t + math.Log1p(math.Exp(-math.Abs(x)))
			if grad != nil {
				grad[i] = (sigmoid32(pred[i]) - y[i]) * scale
			}
		}
		total += s / float64(dim)
	}
	return total
}

// classTargets reads a row's target distribution: a one-hot (or soft) row of y, or, sparse,
// one class index per row.
type classTargets struct{ sparse bool }

func (c classTargets) width(dim int) int {
	if c.sparse {
		return 1
	}
	return dim
}

func (c classTargets) at(yr []float32, j int) float64 {
	if c.sparse {
		if int(yr[0]) == j {
			return 1
		}
		return 0
	}
	return float64(yr[j])
}

// categoricalCELogits is −Σ t·log softmax(x), through the log-sum-exp.
type categoricalCELogits struct{ classTargets }

func (c categoricalCELogits) sum(pred, y []float32, rows, dim int, grad []float32) float64 {
	var total float64
	invB := float32(1) / float32(rows)
	ydim := c.width(dim)
	for r := 0; r < rows; r++ {
		pr := pred[r*dim : (r+1)*dim]
		yr := y[r*ydim : (r+1)*ydim]
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
			t := c.at(yr, j)
			s -= t * (float64(v) - lse)
			ysum += t
		}
		total += s
		if grad != nil {
			gr := grad[r*dim : (r+1)*dim]
			for j, v := range pr {
				p := math.Exp(float64(v) - lse)
				gr[j] = float32(p*ysum-c.at(yr, j)) * invB
			}
		}
	}
	return total
}

// categoricalCE takes probabilities as Keras does: normalise each row to sum 1, clip to
// [ε, 1−ε], −Σ t·log p.
type categoricalCE struct{ classTargets }

func (c categoricalCE) sum(pred, y []float32, rows, dim int, grad []float32) float64 {
	var total float64
	invB := float32(1) / float32(rows)
	ydim := c.width(dim)
	for r := 0; r < rows; r++ {
		pr := pred[r*dim : (r+1)*dim]
		yr := y[r*ydim : (r+1)*ydim]
		var gr []float32
		if grad != nil {
			gr = grad[r*dim : (r+1)*dim]
		}
		var sum float64
		for _, v := range pr {
			sum += float64(v)
		}
		var s, gq float64
		for j, v := range pr {
			q := float64(v) / sum
			qc := math.Min(math.Max(q, lossEpsilon), 1-lossEpsilon)
			t := c.at(yr, j)
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
	return total
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
