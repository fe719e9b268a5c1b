package tensorflow

import (
	"math"
	"math/rand/v2"
	"testing"

	"pgtrain/model"
)

// TestMetricsMatchGoEngine computes each metric from the Go engine's predictions with the
// evaluator this backend builds and feeds chunk by chunk, and compares it with the Go
// engine's own Evaluate.
func TestMetricsMatchGoEngine(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		loss    string
		logits  bool
		metrics []string
		labels  func(r *rand.Rand, rows, out int) []float32
	}{
		{name: "categorical", doc: `{"layers": [{"type": "dense", "units": 3, "activation": "softmax"}]}`,
			loss: "categorical_crossentropy", metrics: []string{"accuracy", "mae", "mse", "rmse", "categorical_accuracy"},
			labels: oneHot},
		{name: "sparse", doc: `{"layers": [{"type": "dense", "units": 4}]}`,
			loss: "sparse_categorical_crossentropy", logits: true, metrics: []string{"acc", "sparse_categorical_accuracy"},
			labels: func(r *rand.Rand, rows, out int) []float32 {
				y := make([]float32, rows)
				for i := range y {
					y[i] = float32(r.IntN(out))
				}
				return y
			}},
		{name: "binary", doc: `{"layers": [{"type": "dense", "units": 1, "activation": "sigmoid"}]}`,
			loss: "binary_crossentropy", metrics: []string{"accuracy", "binary_accuracy", "mae"},
			labels: func(r *rand.Rand, rows, out int) []float32 {
				y := make([]float32, rows*out)
				for i := range y {
					y[i] = float32(r.IntN(2))
				}
				return y
			}},
		{name: "regression, two wide", doc: `{"layers": [{"type": "dense", "units": 2}]}`,
			loss: "mse", metrics: []string{"mae", "rmse", "accuracy"},
			labels: func(r *rand.Rand, rows, out int) []float32 {
				y := make([]float32, rows*out)
				for i := range y {
					y[i] = float32(r.NormFloat64())
				}
				return y
			}},
	}
	const rows, features = 200, 4
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := model.ParseSpec([]byte(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			c := model.Compile{Loss: tc.loss, FromLogits: tc.logits, Metrics: tc.metrics}
			m, err := model.New(spec, features, c, 5)
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(1, 2))
			x := make([]float32, rows*features)
			for i := range x {
				x[i] = float32(r.NormFloat64())
			}
			y := tc.labels(r, rows, m.OutputDim())
			want, err := m.Evaluate(x, y, rows)
			if err != nil {
				t.Fatal(err)
			}
			pred, err := m.Predict(x, rows)
			if err != nil {
				t.Fatal(err)
			}
			ms, err := newMetrics(m)
			if err != nil {
				t.Fatal(err)
			}
			// A pass before, as the batch before an Evaluate, must leave nothing behind.
			od, ld := m.OutputDim(), m.LabelDim()
			ms.Update(pred[:od], y[:ld], 1)
			ms.Reset()
			// Two batches, as Evaluate's accumulation over chunks would see them.
			half := rows / 2
			ms.Update(pred[:half*od], y[:half*ld], half)
			ms.Update(pred[half*od:], y[half*ld:], rows-half)
			got := ms.Results()
			if len(got) != len(tc.metrics) {
				t.Errorf("results %v, want one for each of %v", got, tc.metrics)
			}
			for _, name := range tc.metrics {
				if d := got[name] - want[name]; d > 1e-12 || d < -1e-12 || math.IsNaN(d) {
					t.Errorf("%s = %v, the Go engine says %v", name, got[name], want[name])
				}
			}
		})
	}
}

func oneHot(r *rand.Rand, rows, out int) []float32 {
	y := make([]float32, rows*out)
	for i := range rows {
		y[i*out+r.IntN(out)] = 1
	}
	return y
}
