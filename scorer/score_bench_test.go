package scorer

import (
	"math/rand/v2"
	"strconv"
	"testing"

	"pgtrain/messages"
	"pgtrain/model"
	"pgtrain/preprocessor/transform"
)

// The scorer's own CPU per page: decoding a RAW page of the benchmark's shape (16 real
// columns and a category of 12 values, standardised and one-hot encoded with an
// out-of-vocabulary slot), the model's transform, the MLP's forward pass (64, 64, 1) and the
// output rows. Profile with
// go test -run '^$' -bench ScoreBatch -cpuprofile cpu.out ./scorer/
func BenchmarkScoreBatch(b *testing.B) {
	const rows, numbers, classes = 4096, 16, 12
	const inputDim = numbers + classes + 1
	spec := &model.Spec{Layers: []model.LayerSpec{
		{Type: model.LayerDense, Units: 64, Activation: "relu", UseBias: true},
		{Type: model.LayerDense, Units: 64, Activation: "relu", UseBias: true},
		{Type: model.LayerDense, Units: 1, UseBias: true},
	}}
	m, err := model.New(spec, inputDim, model.Compile{}, 7)
	if err != nil {
		b.Fatal(err)
	}
	plan := regressionPlan("scored")
	plan.Kind, plan.InputDim = messages.JobKindPrediction, inputDim
	rng := rand.New(rand.NewPCG(1, 2))
	raw := &messages.RawBatch{BatchID: messages.BatchID{JobID: plan.JobID}, Keys: make([]int64, rows)}
	for r := range raw.Keys {
		raw.Keys[r] = int64(r)
	}
	for f := range numbers {
		name := "f" + strconv.Itoa(f)
		plan.Features = append(plan.Features, messages.ColumnPlan{Name: name, Kind: messages.KindNumeric, HasImpute: true, Offset: 0.1, Factor: 1.7})
		c := messages.RawColumn{Name: name, Kind: messages.ColumnFloat32}
		for range rows {
			c.Float32 = append(c.Float32, rng.Float32()*2-1)
		}
		raw.Columns = append(raw.Columns, c)
	}
	vocab := make([]string, classes)
	for i := range vocab {
		vocab[i] = "category-" + strconv.Itoa(i)
	}
	plan.Features = append(plan.Features, messages.ColumnPlan{Name: "cat", Kind: messages.KindCategorical, Vocabulary: vocab})
	cat := messages.RawColumn{Name: "cat", Kind: messages.ColumnText}
	for range rows {
		cat.Text = append(cat.Text, vocab[rng.IntN(classes)])
	}
	raw.Columns = append(raw.Columns, cat)
	data, err := messages.EncodeRaw(raw)
	if err != nil {
		b.Fatal(err)
	}
	tr, err := transform.Compile(plan)
	if err != nil {
		b.Fatal(err)
	}
	jr := &jobRun{plan: plan, out: newOutputs(plan.Prediction), writer: &OutputWriter{}, transform: tr}
	s := &Scorer{cfg: Config{ScorerID: "bench"}}
	var batch messages.ReadyBatch
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		page, err := messages.DecodeRaw(data)
		if err != nil {
			b.Fatal(err)
		}
		if err := jr.transform.ApplyInto(page, &batch); err != nil {
			b.Fatal(err)
		}
		if _, out, err := s.score(jr, m, &batch); err != nil || len(out) != rows {
			b.Fatalf("%d rows (%v)", len(out), err)
		}
	}
	b.ReportMetric(float64(b.N)*rows/b.Elapsed().Seconds(), "rows/s")
}
