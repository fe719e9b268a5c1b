package model

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// benchmarkTrain times TrainOnBatch on the benchmark models of bench/modelbench.
func benchmarkTrain(b *testing.B, spec string, in, classes, batch int, loss string, flopsPerSample float64) {
	s, err := ParseSpec([]byte(spec))
	if err != nil {
		b.Fatal(err)
	}
	m, err := New(s, in, Compile{Loss: loss}, 1)
	if err != nil {
		b.Fatal(err)
	}
	task := "regression"
	if classes > 1 {
		task = "onehot"
	}
	x, y := makeData(rand.New(rand.NewPCG(1, 1)), batch, in, task, classes)
	// Besides the mean, the fastest step in CPU time (every thread) and in wall time: on a
	// shared machine those are the figures that compare two builds.
	bestCPU, bestWall := time.Duration(math.MaxInt64), time.Duration(math.MaxInt64)
	for b.Loop() {
		c0, t0 := processCPU(), time.Now()
		if _, err := m.TrainOnBatch(x, y, batch); err != nil {
			b.Fatal(err)
		}
		bestCPU, bestWall = min(bestCPU, processCPU()-c0), min(bestWall, time.Since(t0))
	}
	sps := float64(batch*b.N) / b.Elapsed().Seconds()
	b.ReportMetric(sps, "samples/s")
	b.ReportMetric(sps*flopsPerSample/1e9, "GFLOP/s")
	b.ReportMetric(float64(bestCPU)/1e6, "best-cpu-ms/step")
	b.ReportMetric(float64(bestWall)/1e6, "best-ms/step")
}

func BenchmarkTrainSmall(b *testing.B) {
	benchmarkTrain(b, `{"layers":[{"type":"dense","units":64,"activation":"relu"},{"type":"dense","units":64,"activation":"relu"},{"type":"dense","units":1}]}`,
		16, 1, 256, "mse", 2*(2*16*64+3*64*64+3*64))
}

func BenchmarkTrainLarge(b *testing.B) {
	benchmarkTrain(b, `{"layers":[{"type":"dense","units":512,"activation":"relu"},{"type":"dense","units":512,"activation":"relu"},{"type":"dense","units":10,"activation":"softmax"}]}`,
		256, 10, 1024, "categorical_crossentropy", 2*(2*256*512+3*512*512+3*512*10))
}

// BenchmarkLoss times one loss and gradient evaluation over a batch of 1024 rows of 10
// outputs, per loss.
func BenchmarkLoss(b *testing.B) {
	const rows, dim = 1024, 10
	r := rand.New(rand.NewPCG(2, 2))
	logits := make([]float32, rows*dim)
	probs := make([]float32, rows*dim)
	onehot := make([]float32, rows*dim)
	index := make([]float32, rows)
	for i := 0; i < rows; i++ {
		var sum float32
		for j := 0; j < dim; j++ {
			logits[i*dim+j] = float32(r.NormFloat64())
			probs[i*dim+j] = r.Float32() + 0.01
			sum += probs[i*dim+j]
		}
		for j := 0; j < dim; j++ {
			probs[i*dim+j] /= sum
		}
		c := r.IntN(dim)
		onehot[i*dim+c] = 1
		index[i] = float32(c)
	}
	grad := make([]float32, rows*dim)
	cases := []struct {
		name       string
		fromLogits bool
		pred, y    []float32
	}{
		{LossMSE, false, logits, probs},
		{LossMAE, false, logits, probs},
		{LossHuber, false, logits, probs},
		{LossBinaryCrossentropy, false, probs, onehot},
		{LossBinaryCrossentropy, true, logits, onehot},
		{LossCategoricalCE, false, probs, onehot},
		{LossCategoricalCE, true, logits, onehot},
		{LossSparseCategoricalCE, false, probs, index},
		{LossSparseCategoricalCE, true, logits, index},
	}
	for _, tc := range cases {
		name := tc.name
		if tc.fromLogits {
			name += "/logits"
		}
		b.Run(name, func(b *testing.B) {
			l := newLossFn(tc.name, tc.fromLogits, 1)
			for b.Loop() {
				l.eval(tc.pred, tc.y, rows, dim, grad)
			}
		})
	}
}
