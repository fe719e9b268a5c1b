package transform_test

import (
	"fmt"

	"pgtrain/messages"
	"pgtrain/preprocessor/transform"
)

func ExampleApply() {
	plan := &messages.Plan{
		Features: []messages.ColumnPlan{
			// standard scaling with mean imputation: mean 50, standard deviation 10
			{Name: "score", Kind: messages.KindNumeric, HasImpute: true, Impute: 50, Offset: 50, Factor: 0.1},
			{Name: "color", Kind: messages.KindCategorical, Vocabulary: []string{"red", "green"}},
		},
		InputDim: 1 + 3,
		Label:    messages.ColumnPlan{Name: "price", Kind: messages.KindNumeric},
		LabelDim: 1,
	}
	color := messages.RawColumn{Name: "color", Kind: messages.ColumnText, Text: []string{"green", "blue"}}
	score := messages.RawColumn{Name: "score", Kind: messages.ColumnFloat64, Float64: []float64{70, 0}}
	score.SetNull(1)
	raw := &messages.RawBatch{
		Keys: []int64{1, 2},
		Columns: []messages.RawColumn{
			score, color,
			{Name: "price", Kind: messages.ColumnFloat64, Float64: []float64{9.5, 3}},
		},
	}
	ready, err := transform.Apply(plan, raw)
	if err != nil {
		fmt.Println(err)
		return
	}
	for r := range ready.Rows() {
		fmt.Println(ready.Keys[r], ready.X[r*ready.InputDim:(r+1)*ready.InputDim], ready.Y[r])
	}
	// Output:
	// 1 [2 0 1 0] 9.5
	// 2 [0 0 0 1] 3
}
