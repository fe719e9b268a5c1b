package tensorflow

import (
	"math/rand/v2"
	"strings"
	"testing"

	"pgtrain/trainer/model"
)

// TestMetricsMatchGoEngine computes each metric from the Go engine's predictions with this
// package's code and compares it with the Go engine's own Evaluate.
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
			comp, _ := m.CompileConfig()
			ms, err := resolveMetrics(tc.metrics, comp.Loss, m.OutputDim())
			if err != nil {
				t.Fatal(err)
			}
			// Two batches, as Evaluate's accumulation over chunks would see them.
			half := rows / 2
			ld := m.LabelDim()
			od := m.OutputDim()
			for _, mt := range ms {
				var st metricStat
				mt.update(&st, pred[:half*od], y[:half*ld], half, od)
				mt.update(&st, pred[half*od:], y[half*ld:], rows-half, od)
				got := mt.result(st)
				if d := got - want[mt.name]; d > 1e-12 || d < -1e-12 {
					t.Errorf("%s (%s) = %v, the Go engine says %v", mt.name, mt.kind, got, want[mt.name])
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

func TestResolveMetricsRefusesUnknown(t *testing.T) {
	if _, err := resolveMetrics([]string{"auc"}, model.LossMSE, 1); err == nil || !strings.Contains(err.Error(), "auc") {
		t.Fatalf("resolveMetrics(auc) = %v, want an error naming it", err)
	}
}

func TestCheckSparseLabels(t *testing.T) {
	tests := []struct {
		name    string
		y       []float32
		wantErr bool
	}{
		{name: "valid", y: []float32{0, 2, 1}},
		{name: "negative", y: []float32{0, -1}, wantErr: true},
		{name: "too large", y: []float32{3}, wantErr: true},
		{name: "fraction", y: []float32{1.5}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := checkSparseLabels(tc.y, 3); (err != nil) != tc.wantErr {
				t.Fatalf("checkSparseLabels(%v) = %v, wantErr %v", tc.y, err, tc.wantErr)
			}
		})
	}
}
