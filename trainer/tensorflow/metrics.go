package tensorflow

import (
	"fmt"
	"math"
	"strings"

	"pgtrain/trainer/model"
)

// Metric kinds, as the Go engine resolves metric names.
const (
	metricBinaryAcc      = "binary_accuracy"
	metricCategoricalAcc = "categorical_accuracy"
	metricSparseAcc      = "sparse_categorical_accuracy"
	metricMAE            = "mae"
	metricMSE            = "mse"
	metricRMSE           = "rmse"
)

// metric is one compiled metric, computed in Go from the model's predictions with the Go
// engine's definitions (so that both backends report the same numbers for the same outputs).
type metric struct {
	name string // as given; the key in results
	kind string
}

// resolveMetrics maps metric names to what they compute; "accuracy" follows Keras (and the
// Go engine): binary for binary crossentropy, categorical or sparse for the categorical
// losses, otherwise binary for a one-wide output and categorical for a wider one.
func resolveMetrics(names []string, loss string, outputDim int) ([]metric, error) {
	ms := make([]metric, 0, len(names))
	for _, name := range names {
		var kind string
		switch strings.ToLower(strings.ReplaceAll(name, "_", "")) {
		case "accuracy", "acc":
			switch {
			case loss == model.LossBinaryCrossentropy:
				kind = metricBinaryAcc
			case loss == model.LossCategoricalCE:
				kind = metricCategoricalAcc
			case loss == model.LossSparseCategoricalCE:
				kind = metricSparseAcc
			case outputDim == 1:
				kind = metricBinaryAcc
			default:
				kind = metricCategoricalAcc
			}
		case "binaryaccuracy":
			kind = metricBinaryAcc
		case "categoricalaccuracy":
			kind = metricCategoricalAcc
		case "sparsecategoricalaccuracy":
			kind = metricSparseAcc
		case "mae", "meanabsoluteerror":
			kind = metricMAE
		case "mse", "meansquarederror":
			kind = metricMSE
		case "rmse", "rootmeansquarederror":
			kind = metricRMSE
		default:
			return nil, fmt.Errorf("unsupported metric %q", name)
		}
		ms = append(ms, metric{name: name, kind: kind})
	}
	return ms, nil
}

// metricStat accumulates a metric over batches: Σ per-row value and rows, or for rmse the
// sum of squared errors and the element count.
type metricStat struct{ sum, n float64 }

func (m metric) update(st *metricStat, pred, y []float32, rows, dim int) {
	switch m.kind {
	case metricBinaryAcc:
		for r := range rows {
			var s float64
			for j := range dim {
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
		}
		st.n += float64(rows)
	case metricCategoricalAcc, metricSparseAcc:
		for r := range rows {
			want := int(y[r])
			if m.kind == metricCategoricalAcc {
				want = argmax(y[r*dim : (r+1)*dim])
			}
			if argmax(pred[r*dim:(r+1)*dim]) == want {
				st.sum++
			}
		}
		st.n += float64(rows)
	case metricMAE, metricMSE:
		for r := range rows {
			var s float64
			for j := range dim {
				e := float64(pred[r*dim+j] - y[r*dim+j])
				if m.kind == metricMAE {
					s += math.Abs(e)
				} else {
					s += e * e
				}
			}
			st.sum += s / float64(dim)
		}
		st.n += float64(rows)
	case metricRMSE:
		for i := range rows * dim {
			e := float64(pred[i] - y[i])
			st.sum += e * e
		}
		st.n += float64(rows * dim)
	}
}

func (m metric) result(st metricStat) float64 {
	if st.n == 0 {
		return math.NaN()
	}
	v := st.sum / st.n
	if m.kind == metricRMSE {
		return math.Sqrt(v)
	}
	return v
}

// argmax is the index of the first largest value.
func argmax(v []float32) int {
	best := 0
	for i := 1; i < len(v); i++ {
		if v[i] > v[best] {
			best = i
		}
	}
	return best
}

// checkSparseLabels refuses labels that are not class indices in [0, classes): TensorFlow's
// one-hot encoding would silently turn them into an all-zero row.
func checkSparseLabels(y []float32, classes int) error {
	for i, v := range y {
		if v < 0 || int(v) >= classes || v != float32(math.Trunc(float64(v))) {
			return fmt.Errorf("row %d: sparse label %v is not a class index in [0, %d)", i, v, classes)
		}
	}
	return nil
}
