package model

import (
	"fmt"
	"math"
)

// Sample weights follow Keras's fit(sample_weight=...) (class_weight becomes one): row r's
// loss is multiplied by w[r] and the batch's loss is Σ w·loss / rows, the default
// sum_over_batch_size reduction, which divides by the batch's rows and not by Σ w; the
// gradient is that loss's. The compiled metrics are not weighted (Keras weighs only
// weighted_metrics), and the regularization penalties are added unweighted.

// TrainOnBatchWeighted is TrainOnBatch with a weight per row. It returns the batch's loss
// and metrics before the update.
func (m *Sequential) TrainOnBatchWeighted(x, y, w []float32, rows int) (map[string]float64, error) {
	if !m.compiled {
		return nil, ErrNotCompiled
	}
	if w == nil {
		w = []float32{}
	}
	m.metrics.Reset()
	loss, err := m.trainStep(x, y, w, rows)
	if err != nil {
		return nil, fmt.Errorf("train on batch: %w", err)
	}
	return m.results(loss), nil
}

// EvaluateWeighted is Evaluate with a weight per row: the loss is Σ w·loss / rows (plus the
// penalties), the metrics unweighted, as Keras's evaluate with sample_weight.
func (m *Sequential) EvaluateWeighted(x, y, w []float32, rows int) (map[string]float64, error) {
	if !m.compiled {
		return nil, ErrNotCompiled
	}
	if w == nil {
		w = []float32{}
	}
	loss, err := m.evaluate(x, y, w, rows)
	if err != nil {
		return nil, fmt.Errorf("evaluate: %w", err)
	}
	return m.results(loss), nil
}

// checkSampleWeights accepts nil (no weights) or one finite weight >= 0 per row.
func checkSampleWeights(w []float32, rows int) error {
	if w == nil {
		return nil
	}
	if len(w) != rows {
		return fmt.Errorf("%d sample weights for %d rows", len(w), rows)
	}
	for i, v := range w {
		if !(v >= 0) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("row %d: sample weight %v is not a finite number >= 0", i, v)
		}
	}
	return nil
}

// lossAndGrad computes the batch's loss from the training-mode outputs, leaves dL/dout in
// m.lossGrad and updates the metrics; w, if not nil, weighs each row's loss.
func (m *Sequential) lossAndGrad(out, y, w []float32, rows int) float64 {
	od := m.OutputDim()
	m.lossGrad = grow(m.lossGrad, rows*od)
	loss := m.loss.eval(out, y, rows, od, m.lossGrad)
	m.metrics.Update(out, y, rows)
	if w == nil {
		return loss
	}
	for r := 0; r < rows; r++ {
		g := m.lossGrad[r*od : (r+1)*od]
		for i := range g {
			g[i] *= w[r]
		}
	}
	return m.weightedLossSum(out, y, w, rows) / float64(rows)
}

// weightedLossSum is Σ w[r]·loss(row r).
func (m *Sequential) weightedLossSum(out, y, w []float32, rows int) float64 {
	od, ld := m.OutputDim(), m.LabelDim()
	var total float64
	for r := 0; r < rows; r++ {
		total += float64(w[r]) * m.loss.sum(out[r*od:(r+1)*od], y[r*ld:(r+1)*ld], 1, od, nil)
	}
	return total
}

// ClassWeights sets w[r] to row r's class weight (Keras's class_weight) times w[r] when w
// holds the rows' sample weights already (mult), as Keras multiplies the two. A class
// without a weight is an error naming it.
func ClassWeights(y []float32, rows, labelDim int, weights []float64, w []float32, mult bool) ([]float32, error) {
	if !mult {
		w = w[:0]
	}
	if mult && len(w) != rows {
		return nil, fmt.Errorf("%d sample weights for %d rows", len(w), rows)
	}
	for r := 0; r < rows; r++ {
		c := ClassOf(y[r*labelDim : (r+1)*labelDim])
		if c < 0 || c >= len(weights) {
			return nil, fmt.Errorf("row %d: class %d has no class weight (%d given)", r, c, len(weights))
		}
		if mult {
			w[r] *= float32(weights[c])
		} else {
			w = append(w, float32(weights[c]))
		}
	}
	return w, nil
}

// ClassOf is the class index of one label row, as Keras maps class_weight onto rows: the
// argmax of a one-hot row, else the label rounded (a sparse index or a 0/1 target).
func ClassOf(y []float32) int {
	if len(y) > 1 {
		return argmax(y)
	}
	return int(math.RoundToEven(float64(y[0])))
}
