package transform

import (
	"errors"
	"math"
	"testing"
	"time"

	"pgtrain/messages"
)

// FNV-1a's published values: the hash is the same wherever a model is applied.
func TestHashIsFNV1a(t *testing.T) {
	for s, want := range map[string]uint32{"": 0x811c9dc5, "a": 0xe40c292c, "foobar": 0xbf9cf968} {
		if got := Hash(s); got != want {
			t.Errorf("Hash(%q) = %#x, want %#x", s, got, want)
		}
	}
}

func TestCyclical(t *testing.T) {
	tau := 2 * math.Pi
	tests := []struct {
		name string
		at   time.Time
		want [3]float64 // fractions of day, week (Sunday 0) and year
	}{
		{"leap-year friday 06:00", time.Date(2024, 3, 1, 6, 0, 0, 0, time.UTC), [3]float64{0.25, 5.0 / 7, 60.0 / 366}},
		{"epoch", time.Unix(0, 0).UTC(), [3]float64{0, 4.0 / 7, 0}},
		{"before the epoch, a sunday evening", time.Date(1969, 12, 28, 18, 0, 0, 0, time.UTC), [3]float64{0.75, 0, 361.0 / 365}},
		{"new year's eve noon", time.Date(2023, 12, 31, 12, 0, 0, 0, time.UTC), [3]float64{0.5, 0, 364.0 / 365}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := make([]float32, 6)
			Cyclical(got, float64(tt.at.Unix()))
			for i, f := range tt.want {
				s, c := math.Sincos(tau * f)
				if got[2*i] != float32(s) || got[2*i+1] != float32(c) {
					t.Fatalf("input %d: sin %v cos %v, want %v %v (fraction %v)", i, got[2*i], got[2*i+1], float32(s), float32(c), f)
				}
			}
		})
	}
}

// The new transforms through Apply: a hashed column, a cyclical one, an array's elements,
// and each nonfinite option.
func TestNewTransforms(t *testing.T) {
	day := float64(time.Date(2024, 3, 1, 6, 0, 0, 0, time.UTC).Unix())
	plan := &messages.Plan{
		Features: []messages.ColumnPlan{
			{Name: "tag", Kind: messages.KindCategorical, Encode: messages.EncodeHash, Buckets: 4},
			{Name: "at", Kind: messages.KindNumeric, Type: messages.TypeTimestamp, Encode: messages.EncodeCyclical, Factor: 1, HasImpute: true, Impute: day},
			{Name: "emb", Kind: messages.KindNumeric, Type: messages.TypeFloat4Array, Elements: []messages.ElementPlan{
				{Offset: 1, Factor: 2}, {HasImpute: true, Impute: 9, Factor: 1}}},
			{Name: "x", Kind: messages.KindNumeric, Factor: 1, NonFinite: messages.NonFiniteClip, HasImpute: true, Impute: -1,
				Stats: messages.Stats{Min: -5, Max: 5}},
		},
		InputDim: 4 + 6 + 2 + 1,
		Label:    messages.ColumnPlan{Name: "y", Kind: messages.KindNumeric}, LabelDim: 1,
	}
	e1 := messages.RawColumn{Name: "emb[1]", Kind: messages.ColumnFloat32, Float32: []float32{3, 4, 0, 0}}
	e2 := messages.RawColumn{Name: "emb[2]", Kind: messages.ColumnFloat32, Float32: []float32{7, 0, 0, 0}}
	e2.SetNull(1)
	tag := messages.RawColumn{Name: "tag", Kind: messages.ColumnText, Text: []string{"a", "foobar", "", ""}}
	tag.SetNull(3)
	at := floatCol("at", []float64{day, 0, day, 0}, 3)
	raw := &messages.RawBatch{Keys: []int64{1, 2, 3, 4}, Columns: []messages.RawColumn{
		tag, at, e1, e2,
		floatCol("x", []float64{math.Inf(1), math.Inf(-1), math.NaN(), 2}),
		floatCol("y", []float64{0, 0, 0, 0}),
	}}
	got, err := Apply(plan, raw)
	if err != nil {
		t.Fatal(err)
	}
	cyc := make([]float32, 6)
	Cyclical(cyc, day)
	epoch := make([]float32, 6)
	Cyclical(epoch, 0)
	row := func(slot int, c []float32, e1, e2, x float32) []float32 {
		r := make([]float32, 4)
		if slot >= 0 {
			r[slot] = 1
		}
		return append(append(r, c...), e1, e2, x)
	}
	want := append(append(append(
		row(int(Hash("a")%4), cyc, 4, 7, 5),
		row(int(Hash("foobar")%4), epoch, 6, 9, -5)...),
		row(int(Hash("")%4), cyc, -2, 0, -1)...),
		row(-1, cyc, -2, 0, 2)...) // NULL tag: no slot; NULL at: imputed
	if !equal(got.X, want) {
		t.Fatalf("X\n got %v\nwant %v", got.X, want)
	}

	// The same batch under error and null.
	for _, tt := range []struct {
		mode    string
		wantErr string
	}{
		{messages.NonFiniteError, `row key 1: column "x" is +Inf (nonfinite "error": choose null or clip)`},
		{messages.NonFiniteNull, ""},
	} {
		plan.Features[3].NonFinite = tt.mode
		got, err := Apply(plan, raw)
		var re *RowError
		if tt.wantErr != "" {
			if !errors.As(err, &re) || err.Error() != tt.wantErr {
				t.Fatalf("%q: %v, want %s", tt.mode, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for r, wantX := range []float32{-1, -1, -1, 2} {
			if x := got.X[r*plan.InputDim+12]; x != wantX {
				t.Fatalf("null: row %d x %v, want %v", r, x, wantX)
			}
		}
	}
}
