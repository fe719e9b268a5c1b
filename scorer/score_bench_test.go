package scorer

import (
	"math/rand/v2"
	"testing"

	"pgtrain/messages"
	"pgtrain/model"
)

// The scorer's own CPU per batch: decoding a READY batch of the benchmark's shape (16
// standardised columns, a 12-value category one-hot with its out-of-vocabulary slot),
// the MLP's forward pass (64, 64, 1) and the output rows. Profile with
// go test -run '^$' -bench ScoreBatch -cpuprofile cpu.out ./scorer/
func BenchmarkScoreBatch(b *testing.B) {
	const rows, inputDim = 4096, 29
	spec := &model.Spec{Layers: []model.LayerSpec{
		{Type: model.LayerDense, Units: 64, Activation: "relu", UseBias: true},
		{Type: model.LayerDense, Units: 64, Activation: "relu", UseBias: true},
		{Type: model.LayerDense, Units: 1, UseBias: true},
	}}
	m, err := model.New(spec, inputDim, model.Compile{}, 7)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	batch := &messages.ReadyBatch{BatchID: messages.BatchID{JobID: "j-1"}, InputDim: inputDim, LabelDim: 0}
	for r := range rows {
		batch.Keys = append(batch.Keys, int64(r))
		for range inputDim {
			batch.X = append(batch.X, rng.Float32())
		}
	}
	data, err := messages.EncodeReady(batch)
	if err != nil {
		b.Fatal(err)
	}
	plan := regressionPlan("scored")
	plan.JobID, plan.InputDim = "j-1", inputDim
	jr := &jobRun{plan: plan, out: newOutputs(plan.Prediction), writer: &OutputWriter{}}
	s := &Scorer{cfg: Config{ScorerID: "bench"}}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		got, err := messages.DecodeReady(data)
		if err != nil {
			b.Fatal(err)
		}
		if _, out, err := s.score(jr, m, got); err != nil || len(out) != rows {
			b.Fatalf("%d rows (%v)", len(out), err)
		}
	}
	b.ReportMetric(float64(b.N)*rows/b.Elapsed().Seconds(), "rows/s")
}
