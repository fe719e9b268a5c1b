package transform

import (
	"strconv"
	"testing"

	"pgtrain/messages"
)

// BenchmarkApply: a 4096-row page of 16 standard-scaled numeric features, one categorical
// feature with a 20-value vocabulary and a numeric label, the numbers carried as float64
// (a cast or integer column) and as float32 (a real column).
func BenchmarkApply(b *testing.B) {
	for _, kind := range []uint8{messages.ColumnFloat64, messages.ColumnFloat32} {
		b.Run(kindName(kind), func(b *testing.B) { benchmarkApply(b, kind) })
	}
}

func benchmarkApply(b *testing.B, kind uint8) {
	const rows = 4096
	plan := &messages.Plan{Label: messages.ColumnPlan{Name: "y", Kind: messages.KindNumeric}, LabelDim: 1}
	raw := &messages.RawBatch{Keys: make([]int64, rows)}
	for i := range raw.Keys {
		raw.Keys[i] = int64(i)
	}
	number := func(name string, val func(i int) float64) messages.RawColumn {
		c := messages.RawColumn{Name: name, Kind: kind}
		for i := 0; i < rows; i++ {
			if kind == messages.ColumnFloat32 {
				c.Float32 = append(c.Float32, float32(val(i)))
			} else {
				c.Float64 = append(c.Float64, val(i))
			}
		}
		return c
	}
	for f := 0; f < 16; f++ {
		name := "f" + strconv.Itoa(f)
		plan.Features = append(plan.Features, messages.ColumnPlan{Name: name, Kind: messages.KindNumeric, HasImpute: true, Offset: 1, Factor: 0.5})
		c := number(name, func(i int) float64 { return float64(i * f) })
		for i := 0; i < rows; i += 97 {
			c.SetNull(i)
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
	raw.Columns = append(raw.Columns, cat, number("y", func(int) float64 { return 0 }))
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
