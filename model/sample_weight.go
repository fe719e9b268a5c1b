package model

import (
	"fmt"
	"math"
)

// TrainOnBatchWeighted is TrainOnBatch with a weight per row (Keras's sample_weight, which
// class_weight becomes): the loss is Σ w·loss / rows (sum_over_batch_size) and its gradient
// scales each row's by w; the metrics are weighted means. It returns the batch's loss and
// metrics before the update.
func (m *Sequential) TrainOnBatchWeighted(x, y, w []float32, rows int) (map[string]float64, error) {
	if !m.compiled {
		return nil, ErrNotCompiled
	}
	m.metrics.Reset()
	loss, err := m.trainStepWeighted(x, y, w, rows)
	if err != nil {
		return nil, fmt.Errorf("train on batch: %w", err)
	}
	return m.results(loss), nil
}

// trainStepWeighted is trainStep with sample weights.
func (m *Sequential) trainStepWeighted(x, y, w []float32, rows int) (float64, error) {
	if err := m.checkXY(x, y, rows, true); err != nil {
		return 0, err
	}
	if len(w) != rows {
		return 0, fmt.Errorf("%d sample weights for %d rows", len(w), rows)
	}
	for i, v := range w {
		if !(v >= 0) || math.IsInf(float64(v), 0) {
			return 0, fmt.Errorf("row %d: sample weight %v is not a finite number >= 0", i, v)
		}
	}
	loss := m.weightedGradients(x, y, w, rows)
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		return loss, fmt.Errorf("loss is %v at iteration %d", loss, m.opt.iterations)
	}
	m.opt.apply(m.params)
	return loss, nil
}

// ClassWeights maps each label row to its class's weight (Keras's class_weight); a class
// without a weight is an error naming it.
func ClassWeights(y []float32, rows, labelDim int, weights []float64, w []float32) ([]float32, error) {
	w = w[:0]
	for r := 0; r < rows; r++ {
		c := ClassOf(y[r*labelDim : (r+1)*labelDim])
		if c < 0 || c >= len(weights) {
			return nil, fmt.Errorf("row %d: class %d has no class weight (%d given)", r, c, len(weights))
		}
		w = append(w, float32(weights[c]))
	}
	return w, nil
}

// weightedGradients is gradients with the loss of row r weighted by w[r].
func (m *Sequential) weightedGradients(x, y, w []float32, rows int) float64 {
	out := m.forward(x, rows, true)
	od, ld := m.OutputDim(), m.LabelDim()
	m.lossGrad = grow(m.lossGrad, rows*od)
	m.loss.eval(out, y, rows, od, m.lossGrad)
	var total float64
	for r := 0; r < rows; r++ {
		total += float64(w[r]) * m.loss.sum(out[r*od:(r+1)*od], y[r*ld:(r+1)*ld], 1, od, nil)
		g := m.lossGrad[r*od : (r+1)*od]
		for i := range g {
			g[i] *= w[r]
		}
	}
	m.metrics.UpdateWeighted(out, y, w, rows)
	dy := m.lossGrad
	for i := len(m.layers) - 1; i >= 0; i-- {
		dy = m.layers[i].backward(dy, rows, i > 0)
	}
	return total / float64(rows)
}

// ClassOf is the class index of one label row, as Keras maps class_weight onto rows: the
// argmax of a one-hot row, else the label rounded (a sparse index or a 0/1 target).
func ClassOf(y []float32) int {
	if len(y) > 1 {
		return argmax(y)
	}
	return int(math.RoundToEven(float64(y[0])))
}
