package transform

import (
	"strconv"
	"testing"

	"pgtrain/messages"
)

// BenchmarkApply: a 4096-row page of 16 standard-scaled numeric features, one categorical
// feature with a 20-value vocabulary and a numeric label.
func BenchmarkApply(b *testing.B) {
	const rows = 4096
	plan := &messages.Plan{Label: messages.ColumnPlan{Name: "y", Kind: messages.KindNumeric}, LabelDim: 1}
	raw := &messages.RawBatch{Keys: make([]int64, rows)}
	for i := range raw.Keys {
		raw.Keys[i] = int64(i)
	}
	for f := 0; f < 16; f++ {
		name := "f" + strconv.Itoa(f)
		plan.Features = append(plan.Features, messages.ColumnPlan{Name: name, Kind: messages.KindNumeric, HasImpute: true, Offset: 1, Factor: 0.5})
		c := messages.RawColumn{Name: name, Kind: messages.ColumnFloat64, Float64: make([]float64, rows)}
		for i := range c.Float64 {
			c.Float64[i] = float64(i * f)
			if i%97 == 0 {
				c.SetNull(i)
			}
		}
		raw.Columns = append(raw.Columns, c)
	}
	vocab := make([]string, 20)
	for i := range vocab {
		vocab[i] = "v" + strconv.Itoa(i)
	}
	plan.Features = append(plan.Features, messages.ColumnPlan{Name: "cat", Kind: messages.KindCategorical, Vocabulary: vocab})
	plan.InputDim = 16 + 21
	cat := messages.RawColumn{Name: "cat", Kind: messages.ColumnText, Text: make([]string, rows)}
	for i := range cat.Text {
		cat.Text[i] = "v" + strconv.Itoa(i%25)
	}
	raw.Columns = append(raw.Columns, cat, messages.RawColumn{Name: "y", Kind: messages.ColumnFloat64, Float64: make([]float64, rows)})
	tr, err := Compile(plan)
	if err != nil {
		b.Fatal(err)
	}
	var out messages.ReadyBatch
	b.ReportAllocs()
	b.SetBytes(rows * 8 * 18)
	for b.Loop() {
		if err := tr.ApplyInto(raw, &out); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*rows)/b.Elapsed().Seconds(), "rows/s")
}
