package model

import (
	"fmt"
	"math"
	"strings"
)

// Canonical metric kinds (results stay keyed by the name the user gave).
const (
	metricBinaryAcc      = "binary_accuracy"
	metricCategoricalAcc = "categorical_accuracy"
	metricSparseAcc      = "sparse_categorical_accuracy"
	metricMAE            = "mae"
	metricRMSE           = "rmse"
	metricMSE            = "mse"
)

// metricKind resolves a metric name to what it computes, given the loss; "accuracy" follows
// Keras: binary for binary crossentropy, categorical or sparse for the categorical losses,
// and for the regression losses binary when the output is one wide, categorical otherwise.
func metricKind(name, loss string, outputDim int) (string, error) {
	switch strings.ToLower(strings.ReplaceAll(name, "_", "")) {
	case "accuracy", "acc":
		switch loss {
		case LossBinaryCrossentropy:
			return metricBinaryAcc, nil
		case LossCategoricalCE:
			return metricCategoricalAcc, nil
		case LossSparseCategoricalCE:
			return metricSparseAcc, nil
		}
		if outputDim == 1 {
			return metricBinaryAcc, nil
		}
		return metricCategoricalAcc, nil
	case "binaryaccuracy":
		return metricBinaryAcc, nil
	case "categoricalaccuracy":
		return metricCategoricalAcc, nil
	case "sparsecategoricalaccuracy":
		return metricSparseAcc, nil
	case "mae", "meanabsoluteerror":
		return metricMAE, nil
	case "mse", "meansquarederror":
		return metricMSE, nil
	case "rmse", "rootmeansquarederror":
		return metricRMSE, nil
	}
	return "", fmt.Errorf("unsupported metric %q", name)
}

// Metrics computes a compiled model's metrics from its predictions, accumulated over the
// batches of one pass (a batch, an epoch, an evaluation). It is the engine's own evaluator,
// exported so that a backend that computes predictions elsewhere reports the same numbers
// for the same outputs. It is not safe for concurrent use.
type Metrics struct {
	outputDim int
	metrics   []metric
	stats     []metricStat
}

// NewMetrics resolves c's metrics for a model whose output is outputDim wide: what
// "accuracy" computes depends on the loss and on that width, as in Keras.
func NewMetrics(c Compile, outputDim int) (*Metrics, error) {
	loss := c.Loss
	if loss != "" {
		// Aliases resolve here too, so that "bce" gets binary accuracy without a Validate first.
		var err error
		if loss, err = canonicalLoss(loss); err != nil {
			return nil, err
		}
	}
	m := &Metrics{outputDim: outputDim}
	for _, name := range c.Metrics {
		k, err := metricKind(name, loss, outputDim)
		if err != nil {
			return nil, err
		}
		m.metrics = append(m.metrics, metric{name: name, kind: k})
	}
	m.stats = make([]metricStat, len(m.metrics))
	return m, nil
}

// Len is the number of metrics: with none, a caller need not compute predictions for them.
func (m *Metrics) Len() int { return len(m.metrics) }

// Update adds a batch: pred is rows×outputDim and y rows×label width, row-major. Sample
// weights never reach the compiled metrics, as in Keras (only its weighted_metrics take them).
func (m *Metrics) Update(pred, y []float32, rows int) {
	for i := range m.metrics {
		m.metrics[i].update(&m.stats[i], pred, y, rows, m.outputDim)
	}
}

// Results is each metric over the rows added since the last Reset, keyed by the name it was
// given, in a new map the caller may add to (the loss, validation results). A metric over
// no rows is NaN.
func (m *Metrics) Results() map[string]float64 {
	r := make(map[string]float64, len(m.metrics)+1)
	for i := range m.metrics {
		r[m.metrics[i].name] = m.metrics[i].result(m.stats[i])
	}
	return r
}

// Reset forgets the rows added, to start the next pass.
func (m *Metrics) Reset() { clear(m.stats) }

// metricStat accumulates one metric over batches: mean metrics keep Σvalue·rows and rows;
// rmse keeps the sum of squared errors and the element count.
type metricStat struct {
	sum, n float64
}

// metric is one compiled metric.
type metric struct {
	name string // as the user gave it; the key in results
	kind string
}

// update adds a batch of predictions to st.
func (m *metric) update(st *metricStat, pred, y []float32, rows, dim int) {
	switch m.kind {
	case metricBinaryAcc:
		for r := 0; r < rows; r++ {
			var s float64
			for j := 0; j < dim; j++ {
				i := r*dim + j
				var p float32
				if pred[i] > 0.5 {
					p = 1
				}
				if p == y[i] {
					s++
				}
			}
			st.sum += s / float64(dim)
			st.n++
		}
	case metricCategoricalAcc, metricSparseAcc:
		for r := 0; r < rows; r++ {
			pa := argmax(pred[r*dim : (r+1)*dim])
			var ya int
			if m.kind == metricSparseAcc {
				ya = int(y[r])
			} else {
				ya = argmax(y[r*dim : (r+1)*dim])
			}
			if pa == ya {
				st.sum++
			}
			st.n++
		}
	case metricMAE, metricMSE:
		for r := 0; r < rows; r++ {
			var s float64
			for j := 0; j < dim; j++ {
				e := float64(pred[r*dim+j] - y[r*dim+j])
				if m.kind == metricMAE {
					s += math.Abs(e)
				} else {
					s += e * e
				}
			}
			st.sum += s / float64(dim)
			st.n++
		}
	case metricRMSE:
		for i := 0; i < rows*dim; i++ {
			e := float64(pred[i] - y[i])
			st.sum += e * e
			st.n++
		}
	}
}

func (m *metric) result(st metricStat) float64 {
	if st.n == 0 {
		return math.NaN()
	}
	v := st.sum / st.n
	if m.kind == metricRMSE {
		return math.Sqrt(v)
	}
	return v
}

// argmax returns the index of the first largest value.
func argmax(v []float32) int {
	best := 0
	for i := 1; i < len(v); i++ {
		if v[i] > v[best] {
			best = i
		}
	}
	return best
}
