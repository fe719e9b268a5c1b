package transform

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"pgtrain/messages"
)

// testPlan has a standard-scaled numeric feature with mean imputation, a min-max scaled one
// without imputation, a categorical one and a label of the given encoding.
func testPlan(labelEnc string) *messages.Plan {
	p := &messages.Plan{
		JobID: "job",
		Features: []messages.ColumnPlan{
			{Name: "age", Kind: messages.KindNumeric, HasImpute: true, Impute: 40, Offset: 40, Factor: 0.5},
			{Name: "income", Kind: messages.KindNumeric, Offset: 10, Factor: 0.01},
			{Name: "city", Kind: messages.KindCategorical, Vocabulary: []string{"paris", "rome"}},
		},
		InputDim: 1 + 1 + 3,
	}
	p.Spec.Label.Encode = labelEnc
	switch labelEnc {
	case messages.EncodeNone:
		p.Label = messages.ColumnPlan{Name: "y", Kind: messages.KindNumeric}
		p.LabelDim = 1
	case messages.EncodeOneHot:
		p.Label = messages.ColumnPlan{Name: "y", Kind: messages.KindCategorical, Vocabulary: []string{"a", "b", "c"}}
		p.LabelDim = 3
	case messages.EncodeIndex:
		p.Label = messages.ColumnPlan{Name: "y", Kind: messages.KindCategorical, Vocabulary: []string{"a", "b", "c"}}
		p.LabelDim = 1
	}
	return p
}

func floatCol(name string, vals []float64, nulls ...int) messages.RawColumn {
	c := messages.RawColumn{Name: name, Kind: messages.ColumnFloat64, Float64: vals}
	for _, i := range nulls {
		c.SetNull(i)
	}
	return c
}

func float32Col(name string, vals []float32, nulls ...int) messages.RawColumn {
	c := messages.RawColumn{Name: name, Kind: messages.ColumnFloat32, Float32: vals}
	for _, i := range nulls {
		c.SetNull(i)
	}
	return c
}

func textCol(name string, vals []string, nulls ...int) messages.RawColumn {
	c := messages.RawColumn{Name: name, Kind: messages.ColumnText, Text: vals}
	for _, i := range nulls {
		c.SetNull(i)
	}
	return c
}

func batch(label messages.RawColumn) *messages.RawBatch {
	return &messages.RawBatch{
		BatchID: messages.BatchID{JobID: "job", Pass: 0, Range: 2, Page: 3},
		Last:    true,
		Keys:    []int64{10, 11, 12},
		Columns: []messages.RawColumn{
			floatCol("age", []float64{30, 0, 50}, 1),
			floatCol("income", []float64{10, 110, 210}),
			textCol("city", []string{"rome", "", "oslo"}, 1),
			label,
		},
	}
}

// A sample weight column is read as it is into the batch's W; a NULL, negative or
// non-finite weight is a row error naming the key and the column.
func TestApplySampleWeights(t *testing.T) {
	plan := testPlan(messages.EncodeNone)
	plan.SampleWeight = &messages.ColumnPlan{Name: "w", Kind: messages.KindNumeric, Factor: 1}
	raw := batch(floatCol("y", []float64{1, 2, 3}))
	raw.Columns = append(raw.Columns, float32Col("w", []float32{0.5, 0, 2.25}))
	out, err := Apply(plan, raw)
	if err != nil {
		t.Fatal(err)
	}
	if !equal(out.W, []float32{0.5, 0, 2.25}) {
		t.Fatalf("sample weights %v", out.W)
	}
	for _, tt := range []struct {
		col  messages.RawColumn
		want string
	}{
		{floatCol("w", []float64{1, 0, 2}, 1), `row key 11: column "w" is NULL`},
		{floatCol("w", []float64{1, 2, -0.5}), `row key 12: column "w" is -0.5`},
		{floatCol("w", []float64{math.Inf(1), 2, 1}), `row key 10: column "w" is +Inf`},
		{floatCol("w", []float64{1, math.NaN(), 1}), `row key 11: column "w" is NaN`},
	} {
		raw := batch(floatCol("y", []float64{1, 2, 3}))
		raw.Columns = append(raw.Columns, tt.col)
		_, err := Apply(plan, raw)
		var rowErr *RowError
		if !errors.As(err, &rowErr) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("got %v, want a row error saying %q", err, tt.want)
		}
	}
	// Without its column the batch does not match the plan.
	if _, err := Apply(plan, batch(floatCol("y", []float64{1, 2, 3}))); !errors.Is(err, ErrBatch) {
		t.Fatalf("a batch without the weight column: %v", err)
	}
}

func TestApply(t *testing.T) {
	tests := []struct {
		name    string
		plan    *messages.Plan
		raw     *messages.RawBatch
		wantX   []float32
		wantY   []float32
		wantErr string
	}{
		{
			name: "numeric label, mean imputation, scaling, one-hot with OOV",
			plan: testPlan(messages.EncodeNone),
			raw:  batch(floatCol("y", []float64{1.5, -2, 3})),
			wantX: []float32{
				-5, 0, 0, 1, 0, // age (30-40)*0.5, income (10-10)*0.01, rome
				0, 1, 0, 0, 1, // age NULL -> 40, city NULL -> OOV
				5, 2, 0, 0, 1, // oslo is not in the vocabulary -> OOV
			},
			wantY: []float32{1.5, -2, 3},
		},
		{
			name:  "one-hot label",
			plan:  testPlan(messages.EncodeOneHot),
			raw:   batch(textCol("y", []string{"c", "a", "b"})),
			wantX: []float32{-5, 0, 0, 1, 0, 0, 1, 0, 0, 1, 5, 2, 0, 0, 1},
			wantY: []float32{0, 0, 1, 1, 0, 0, 0, 1, 0},
		},
		{
			name:  "index label",
			plan:  testPlan(messages.EncodeIndex),
			raw:   batch(textCol("y", []string{"c", "a", "b"})),
			wantX: []float32{-5, 0, 0, 1, 0, 0, 1, 0, 0, 1, 5, 2, 0, 0, 1},
			wantY: []float32{2, 0, 1},
		},
		{
			name: "NULL without imputation names key and column",
			plan: testPlan(messages.EncodeNone),
			raw: func() *messages.RawBatch {
				b := batch(floatCol("y", []float64{1, 2, 3}))
				b.Columns[1].SetNull(2)
				return b
			}(),
			wantErr: `row key 12: column "income" is NULL and has no imputation`,
		},
		{
			name: "a typed key names the row by its text, not its hash",
			plan: testPlan(messages.EncodeNone),
			raw: func() *messages.RawBatch {
				b := batch(floatCol("y", []float64{1, 2, 3}))
				b.KeyText = [][]string{{"t1", "t1", "t2"}, {"7", "8", "9"}}
				b.Columns[1].SetNull(2)
				return b
			}(),
			wantErr: `row key ("t2", "9"): column "income" is NULL and has no imputation`,
		},
		{
			name: "key text of another length than the rows",
			plan: testPlan(messages.EncodeNone),
			raw: func() *messages.RawBatch {
				b := batch(floatCol("y", []float64{1, 2, 3}))
				b.KeyText = [][]string{{"a", "b"}}
				return b
			}(),
			wantErr: `key column 0 has 2 values for 3 rows`,
		},
		{
			name:    "NULL numeric label",
			plan:    testPlan(messages.EncodeNone),
			raw:     batch(floatCol("y", []float64{1, 2, 3}, 1)),
			wantErr: `row key 11: column "y" is NULL`,
		},
		{
			name:    "label value outside the vocabulary",
			plan:    testPlan(messages.EncodeOneHot),
			raw:     batch(textCol("y", []string{"a", "zebra", "b"})),
			wantErr: `row key 11: column "y" has value "zebra", which is not in the label vocabulary`,
		},
		{
			name:    "NULL index label",
			plan:    testPlan(messages.EncodeIndex),
			raw:     batch(textCol("y", []string{"a", "b", ""}, 2)),
			wantErr: `row key 12: column "y" is NULL`,
		},
		{
			name: "missing column",
			plan: testPlan(messages.EncodeNone),
			raw: func() *messages.RawBatch {
				b := batch(floatCol("y", []float64{1, 2, 3}))
				b.Columns = b.Columns[1:]
				return b
			}(),
			wantErr: `column "age" is missing`,
		},
		{
			name: "unknown column",
			plan: testPlan(messages.EncodeNone),
			raw: func() *messages.RawBatch {
				b := batch(floatCol("y", []float64{1, 2, 3}))
				b.Columns = append(b.Columns, floatCol("extra", []float64{1, 2, 3}))
				return b
			}(),
			wantErr: `column "extra" is not in the plan`,
		},
		{
			name:    "wrong kind",
			plan:    testPlan(messages.EncodeNone),
			raw:     batch(textCol("y", []string{"1", "2", "3"})),
			wantErr: `column "y" has raw kind text, the plan wants float64 or float32`,
		},
		{
			name:    "a number where the plan wants text",
			plan:    testPlan(messages.EncodeIndex),
			raw:     batch(float32Col("y", []float32{1, 2, 3})),
			wantErr: `column "y" has raw kind float32, the plan wants text`,
		},
		{
			name: "float32 columns, as real columns travel",
			plan: testPlan(messages.EncodeNone),
			raw: func() *messages.RawBatch {
				b := batch(float32Col("y", []float32{1.5, -2, 3}))
				b.Columns[0] = float32Col("age", []float32{30, 0, 50}, 1)
				b.Columns[1] = float32Col("income", []float32{10, 110, 210})
				return b
			}(),
			wantX: []float32{-5, 0, 0, 1, 0, 0, 1, 0, 0, 1, 5, 2, 0, 0, 1},
			wantY: []float32{1.5, -2, 3},
		},
		{
			name: "NULL float32 without imputation",
			plan: testPlan(messages.EncodeNone),
			raw: func() *messages.RawBatch {
				b := batch(floatCol("y", []float64{1, 2, 3}))
				b.Columns[1] = float32Col("income", []float32{10, 110, 210}, 2)
				return b
			}(),
			wantErr: `row key 12: column "income" is NULL and has no imputation`,
		},
		{
			name: "short float32 column",
			plan: testPlan(messages.EncodeNone),
			raw: func() *messages.RawBatch {
				b := batch(floatCol("y", []float64{1, 2, 3}))
				b.Columns[1] = float32Col("income", []float32{10, 110})
				return b
			}(),
			wantErr: `column "income" has 2 values`,
		},
		{
			name: "short column",
			plan: testPlan(messages.EncodeNone),
			raw: func() *messages.RawBatch {
				b := batch(floatCol("y", []float64{1, 2, 3}))
				b.Columns[0].Float64 = b.Columns[0].Float64[:2]
				return b
			}(),
			wantErr: `column "age" has 2 values`,
		},
		{
			name: "duplicate column",
			plan: testPlan(messages.EncodeNone),
			raw: func() *messages.RawBatch {
				b := batch(floatCol("y", []float64{1, 2, 3}))
				b.Columns[1] = b.Columns[0]
				return b
			}(),
			wantErr: `column "age" appears twice`,
		},
		{
			name: "empty batch",
			plan: testPlan(messages.EncodeOneHot),
			raw: &messages.RawBatch{Last: true, Columns: []messages.RawColumn{
				floatCol("age", nil), floatCol("income", nil), textCol("city", nil), textCol("y", nil),
			}},
			wantX: []float32{},
			wantY: []float32{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Apply(tt.plan, tt.raw)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.BatchID != tt.raw.BatchID || got.Last != tt.raw.Last {
				t.Errorf("id %v last %v, want %v %v", got.BatchID, got.Last, tt.raw.BatchID, tt.raw.Last)
			}
			if got.InputDim != tt.plan.InputDim || got.LabelDim != tt.plan.LabelDim {
				t.Errorf("dims %d×%d, want %d×%d", got.InputDim, got.LabelDim, tt.plan.InputDim, tt.plan.LabelDim)
			}
			if !equal(got.Keys, tt.raw.Keys) {
				t.Errorf("keys %v, want %v", got.Keys, tt.raw.Keys)
			}
			if !equal(got.X, tt.wantX) {
				t.Errorf("X = %v\nwant %v", got.X, tt.wantX)
			}
			if !equal(got.Y, tt.wantY) {
				t.Errorf("Y = %v\nwant %v", got.Y, tt.wantY)
			}
		})
	}
}

// The statistics become Impute/Offset/Factor in the coordinator; these cases check that the
// transform applies them as the plan gives them, for each imputation and scaling.
func TestImputeAndScale(t *testing.T) {
	stats := messages.Stats{Mean: 4, StdDev: 2, Min: 1, Max: 9, Median: 3}
	tests := []struct {
		name string
		col  messages.ColumnPlan
		want []float32 // for x = 5 and NULL
	}{
		{"mean, standard", messages.ColumnPlan{HasImpute: true, Impute: stats.Mean, Offset: stats.Mean, Factor: 1 / stats.StdDev}, []float32{0.5, 0}},
		{"median, minmax", messages.ColumnPlan{HasImpute: true, Impute: stats.Median, Offset: stats.Min, Factor: 1 / (stats.Max - stats.Min)}, []float32{0.5, 0.25}},
		{"constant, none", messages.ColumnPlan{HasImpute: true, Impute: -1, Offset: 0, Factor: 1}, []float32{5, -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			col := tt.col
			col.Name, col.Kind, col.Stats = "x", messages.KindNumeric, stats
			plan := &messages.Plan{
				Features: []messages.ColumnPlan{col}, InputDim: 1,
				Label: messages.ColumnPlan{Name: "y", Kind: messages.KindNumeric}, LabelDim: 1,
			}
			raw := &messages.RawBatch{Keys: []int64{1, 2}, Columns: []messages.RawColumn{
				floatCol("x", []float64{5, 0}, 1), floatCol("y", []float64{0, 0}),
			}}
			got, err := Apply(plan, raw)
			if err != nil {
				t.Fatal(err)
			}
			if !equal(got.X, tt.want) {
				t.Fatalf("X = %v, want %v", got.X, tt.want)
			}
		})
	}
}

// A real column travels as float32 instead of being cast to float64 in SQL; widening a
// float32 is exact, so every feature and label must come out bit for bit as before.
func TestFloat32ColumnsMatchFloat64(t *testing.T) {
	vals := []float32{0, float32(math.Copysign(0, -1)), 1, -1, 0.1, -2.5e-3, 3.4028235e38, -3.4028235e38,
		1.17549435e-38, 1e-45, 16777217, 123456.79, float32(math.Inf(1)), float32(math.Inf(-1))}
	for i := 0; i < 200; i++ { // and a spread of ordinary values
		vals = append(vals, math.Float32frombits(uint32(i)*0x01010101^0x3c000000))
	}
	wide := make([]float64, len(vals))
	for i, v := range vals {
		wide[i] = float64(v)
	}
	tests := []struct {
		name string
		col  messages.ColumnPlan
	}{
		{"standard", messages.ColumnPlan{Offset: 0.123456789, Factor: 1 / 0.987654321}},
		{"minmax", messages.ColumnPlan{Offset: -1e3, Factor: 1.0 / 3}},
		{"none", messages.ColumnPlan{Factor: 1}},
		{"imputed", messages.ColumnPlan{HasImpute: true, Impute: 0.7, Offset: 0.2, Factor: 3}},
		// NaN and ±Inf are refused by default; clip takes them (NaN as NULL, imputed).
		{"clipped", messages.ColumnPlan{HasImpute: true, Impute: 0.7, Offset: 0.2, Factor: 3, NonFinite: messages.NonFiniteClip,
			Stats: messages.Stats{Min: -5, Max: 7}}},
	}
	all, allWide := vals, wide
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vals, wide := all, allWide
			if tt.col.NonFinite == messages.NonFiniteError {
				vals, wide = nil, nil
				for _, v := range all {
					if x := float64(v); !math.IsNaN(x) && !math.IsInf(x, 0) {
						vals, wide = append(vals, v), append(wide, x)
					}
				}
			}
			col := tt.col
			col.Name, col.Kind = "x", messages.KindNumeric
			plan := &messages.Plan{
				Features: []messages.ColumnPlan{col}, InputDim: 1,
				Label: messages.ColumnPlan{Name: "y", Kind: messages.KindNumeric}, LabelDim: 1,
			}
			keys := make([]int64, len(vals))
			var nulls []int
			if col.HasImpute {
				nulls = []int{3, 7}
			}
			want, err := Apply(plan, &messages.RawBatch{Keys: keys, Columns: []messages.RawColumn{
				floatCol("x", wide, nulls...), floatCol("y", wide)}})
			if err != nil {
				t.Fatal(err)
			}
			got, err := Apply(plan, &messages.RawBatch{Keys: keys, Columns: []messages.RawColumn{
				float32Col("x", vals, nulls...), float32Col("y", vals)}})
			if err != nil {
				t.Fatal(err)
			}
			for i := range vals {
				if math.Float32bits(got.X[i]) != math.Float32bits(want.X[i]) || math.Float32bits(got.Y[i]) != math.Float32bits(want.Y[i]) {
					t.Fatalf("value %d (%g): X %g Y %g from float32, X %g Y %g from float64", i, vals[i], got.X[i], got.Y[i], want.X[i], want.Y[i])
				}
			}
		})
	}
}

func TestCompileRejectsBadPlans(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(p *messages.Plan)
		wantErr string
	}{
		{"ok", func(p *messages.Plan) {}, ""},
		{"input dim", func(p *messages.Plan) { p.InputDim = 4 }, "input_dim is 4 but the features are 5 wide"},
		{"label dim", func(p *messages.Plan) { p.LabelDim = 1 }, "label_dim is 1"},
		{"unknown kind", func(p *messages.Plan) { p.Features[0].Kind = "blob" }, `unknown kind "blob"`},
		{"label is a feature", func(p *messages.Plan) { p.Label.Name = "age" }, "also a feature"},
		{"duplicate feature", func(p *messages.Plan) { p.Features[1].Name = "age" }, "listed twice"},
		{"numeric one-hot label", func(p *messages.Plan) { p.Label.Kind = messages.KindNumeric }, "needs a categorical column"},
		{"repeated vocabulary", func(p *messages.Plan) { p.Features[2].Vocabulary = []string{"x", "x"} }, "repeats a value"},
		{"unknown label encoding", func(p *messages.Plan) { p.Spec.Label.Encode = "ordinal" }, `unknown encoding "ordinal"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testPlan(messages.EncodeOneHot)
			tt.edit(p)
			_, err := Compile(p)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrPlan) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want ErrPlan containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestApplyIntoReusesBuffers(t *testing.T) {
	tr, err := Compile(testPlan(messages.EncodeNone))
	if err != nil {
		t.Fatal(err)
	}
	raw := batch(floatCol("y", []float64{1, 2, 3}))
	var out messages.ReadyBatch
	if err := tr.ApplyInto(raw, &out); err != nil {
		t.Fatal(err)
	}
	first := append([]float32(nil), out.X...)
	allocs := testing.AllocsPerRun(100, func() {
		if err := tr.ApplyInto(raw, &out); err != nil {
			t.Fatal(err)
		}
	})
	if !equal(out.X, first) {
		t.Fatalf("second pass X = %v, want %v", out.X, first)
	}
	// One small slice (the column match) per batch, none per row.
	if allocs > 1 {
		t.Fatalf("%v allocations per batch, want at most 1", allocs)
	}
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			if f, ok := any(a[i]).(float32); ok && math.IsNaN(float64(f)) {
				if g := any(b[i]).(float32); math.IsNaN(float64(g)) {
					continue
				}
			}
			return false
		}
	}
	return true
}

// A prediction job's READY carries its typed key's text, for the scorer to write; a
// training job's does not (the trainer needs only the hashes).
func TestKeyTextReachesReadyOnlyForPredictions(t *testing.T) {
	for _, kind := range []string{messages.JobKindTraining, messages.JobKindPrediction} {
		plan := testPlan(messages.EncodeNone)
		plan.Kind, plan.KeyColumns = kind, []messages.KeyColumn{{Name: "k", Type: "uuid"}}
		raw := batch(floatCol("y", []float64{1, 2, 3}))
		raw.KeyText = [][]string{{"a", "b", "c"}}
		out, err := Apply(plan, raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := out.KeyText != nil; got != (kind == messages.JobKindPrediction) || got && !reflect.DeepEqual(out.KeyText, raw.KeyText) {
			t.Fatalf("kind %q: READY key text %q", kind, out.KeyText)
		}
	}
}
