package model

import (
	"math/rand/v2"
	"testing"
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
	for b.Loop() {
		if _, err := m.TrainOnBatch(x, y, batch); err != nil {
			b.Fatal(err)
		}
	}
	sps := float64(batch*b.N) / b.Elapsed().Seconds()
	b.ReportMetric(sps, "samples/s")
	b.ReportMetric(sps*flopsPerSample/1e9, "GFLOP/s")
}

func BenchmarkTrainSmall(b *testing.B) {
	benchmarkTrain(b, `{"layers":[{"type":"dense","units":64,"activation":"relu"},{"type":"dense","units":64,"activation":"relu"},{"type":"dense","units":1}]}`,
		16, 1, 256, "mse", 2*(2*16*64+3*64*64+3*64))
}

func BenchmarkTrainLarge(b *testing.B) {
	benchmarkTrain(b, `{"layers":[{"type":"dense","units":512,"activation":"relu"},{"type":"dense","units":512,"activation":"relu"},{"type":"dense","units":10,"activation":"softmax"}]}`,
		256, 10, 1024, "categorical_crossentropy", 2*(2*256*512+3*512*512+3*512*10))
}
