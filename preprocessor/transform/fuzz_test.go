package transform

import (
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"testing"

	"pgtrain/messages"
)

// widePlan is a plan with every encoding besides scaling and one-hot: a number whose
// non-finite values take option nonFinite, a boolean, a timestamp as cyclical inputs, a date
// as a number, a float8[3] array, and a text column hashed into 7 buckets.
func widePlan(nonFinite string) *messages.Plan {
	stats := messages.Stats{Min: -3, Max: 90}
	elem := messages.ElementPlan{HasImpute: true, Impute: 1, Offset: 1, Factor: 2, Stats: stats}
	return &messages.Plan{
		JobID: "job",
		Features: []messages.ColumnPlan{
			{Name: "age", Kind: messages.KindNumeric, HasImpute: true, Impute: 40, Offset: 40, Factor: 0.5, NonFinite: nonFinite, Stats: stats},
			{Name: "flag", Kind: messages.KindNumeric, Type: messages.TypeBoolean, HasImpute: true, Factor: 1, NonFinite: nonFinite, Stats: stats},
			{Name: "when", Kind: messages.KindNumeric, Type: messages.TypeTimestamp, Encode: messages.EncodeCyclical, NonFinite: nonFinite, Stats: stats},
			{Name: "day", Kind: messages.KindNumeric, Type: messages.TypeDate, HasImpute: true, Offset: 1.7e9, Factor: 1e-8, NonFinite: nonFinite, Stats: stats},
			{Name: "vec", Kind: messages.KindNumeric, Type: messages.TypeFloat8Array, NonFinite: nonFinite, Elements: []messages.ElementPlan{elem, elem, elem}},
			{Name: "tag", Kind: messages.KindCategorical, Encode: messages.EncodeHash, Buckets: 7},
		},
		Label:    messages.ColumnPlan{Name: "y", Kind: messages.KindNumeric},
		InputDim: 1 + 1 + messages.CyclicalWidth + 1 + 3 + 7,
		LabelDim: 1,
	}
}

// FuzzApply builds a raw batch from the fuzzer's bytes (row count, NULLs, float64 or float32
// values, text drawn partly from the vocabularies, sometimes a wrong column kind or a short
// column) and checks that Apply never panics, that it fails only with a row or batch error,
// and that a success has the shape rows × InputDim and rows × LabelDim (and, with a sample
// weight column, one finite weight >= 0 per row). With mode bit 64 the plan is widePlan (each
// non-finite option, every newer encoding) with a sample weight column; with bit 128 it is a
// prediction plan of a typed key, whose key text (sometimes short) goes on with the batch.
func FuzzApply(f *testing.F) {
	f.Add(uint8(5), uint8(64), []byte{0, 0, 0xf0, 0x7f, 1, 2, 3, 4, 5, 6, 7, 8, 0xff, 0xff, 0xff, 0xff}) // +Inf, error
	f.Add(uint8(5), uint8(65), []byte{0, 0, 0xf8, 0x7f, 0, 0, 0xf0, 0xff, 9})                            // NaN, -Inf, null
	f.Add(uint8(12), uint8(66+16), []byte("clip me 0123456789 \xff\xff\xf0\x7f"))                        // clip, NULLs
	f.Add(uint8(7), uint8(64+128), []byte{3, 1, 4, 1, 5, 9, 2, 6})
	f.Add(uint8(7), uint8(128+32), []byte{3, 1, 4, 1, 5, 9, 2, 6})
	f.Add(uint8(3), uint8(0), []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	f.Add(uint8(0), uint8(1), []byte{})
	f.Add(uint8(40), uint8(2), []byte{0xff, 0, 0xff, 0, 7})
	f.Add(uint8(9), uint8(7), []byte("rome paris a b c zebra"))
	f.Add(uint8(5), uint8(64), []byte{0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, nrows, mode uint8, data []byte) {
		enc := []string{messages.EncodeNone, messages.EncodeOneHot, messages.EncodeIndex}[int(mode)%3]
		wide := mode&64 != 0
		plan := testPlan(enc)
		if wide {
			enc = messages.EncodeNone
			plan = widePlan([]string{messages.NonFiniteError, messages.NonFiniteNull, messages.NonFiniteClip}[int(mode)%3])
			plan.SampleWeight = &messages.ColumnPlan{Name: "w", Kind: messages.KindNumeric, Factor: 1}
		}
		if mode&128 != 0 {
			plan.Kind, plan.KeyColumns = messages.JobKindPrediction, []messages.KeyColumn{{Name: "k", Type: "text"}, {Name: "i", Type: "integer"}}
		}
		src := byteSource{data: data}
		rows := int(nrows) % 64
		raw := &messages.RawBatch{Keys: make([]int64, rows)}
		for i := range raw.Keys {
			raw.Keys[i] = int64(src.next64())
		}
		if mode&128 != 0 {
			raw.KeyText = make([][]string, 2)
			for i := range raw.KeyText {
				raw.KeyText[i] = make([]string, rows)
				for r := range raw.KeyText[i] {
					raw.KeyText[i][r] = string(rune('a' + src.next()%26))
				}
			}
			if mode&32 != 0 && rows > 0 {
				raw.KeyText[1] = raw.KeyText[1][1:]
			}
		}
		words := []string{"paris", "rome", "oslo", "", "a", "b", "c", "zebra"}
		addCol := func(name string, text bool) {
			if mode&8 != 0 && src.next()%5 == 0 {
				text = !text // a kind the plan does not want
			}
			c := messages.RawColumn{Name: name}
			if text {
				c.Kind, c.Text = messages.ColumnText, make([]string, rows)
				for i := range c.Text {
					c.Text[i] = words[int(src.next())%len(words)]
				}
			} else if src.next()%2 == 0 {
				c.Kind, c.Float64 = messages.ColumnFloat64, make([]float64, rows)
				for i := range c.Float64 {
					c.Float64[i] = math.Float64frombits(src.next64())
				}
			} else {
				c.Kind, c.Float32 = messages.ColumnFloat32, make([]float32, rows)
				for i := range c.Float32 {
					c.Float32[i] = math.Float32frombits(uint32(src.next64()))
				}
			}
			for i := 0; i < rows; i++ {
				if mode&16 != 0 && src.next()%4 == 0 {
					c.SetNull(i)
				}
			}
			raw.Columns = append(raw.Columns, c)
		}
		if wide {
			for _, name := range []string{"age", "flag", "when", "day", messages.RawName("vec", 0), messages.RawName("vec", 1), messages.RawName("vec", 2)} {
				addCol(name, false)
			}
			addCol("tag", true)
		} else {
			addCol("age", false)
			addCol("income", false)
			addCol("city", true)
		}
		addCol("y", enc != messages.EncodeNone)
		if plan.SampleWeight != nil {
			addCol("w", false)
		}
		if c := &raw.Columns[0]; mode&32 != 0 && c.Len() > 0 {
			switch c.Kind {
			case messages.ColumnFloat64:
				c.Float64 = c.Float64[1:]
			case messages.ColumnFloat32:
				c.Float32 = c.Float32[1:]
			default:
				c.Text = c.Text[1:]
			}
		}

		out, err := Apply(plan, raw)
		if err != nil {
			var rowErr *RowError
			if !errors.As(err, &rowErr) && !errors.Is(err, ErrBatch) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if len(out.Keys) != rows || len(out.X) != rows*plan.InputDim || len(out.Y) != rows*plan.LabelDim {
			t.Fatalf("shape: %d keys, %d X, %d Y for %d rows of %d×%d", len(out.Keys), len(out.X), len(out.Y), rows, plan.InputDim, plan.LabelDim)
		}
		if (plan.SampleWeight != nil) != (out.W != nil) || out.W != nil && len(out.W) != rows {
			t.Fatalf("%d sample weights for %d rows (weight column %v)", len(out.W), rows, plan.SampleWeight != nil)
		}
		for r, w := range out.W {
			if !(w >= 0) || math.IsInf(float64(w), 0) {
				t.Fatalf("row %d: sample weight %v", r, w)
			}
		}
		if mode&128 != 0 && !reflect.DeepEqual(out.KeyText, raw.KeyText) {
			t.Fatalf("a prediction's key text %q became %q", raw.KeyText, out.KeyText)
		}
		if wide {
			checkWide(t, plan, out)
			return
		}
		// Each categorical block is exactly one-hot.
		for r := 0; r < rows; r++ {
			var sum float32
			for _, v := range out.X[r*plan.InputDim+2 : r*plan.InputDim+5] {
				sum += v
			}
			if sum != 1 {
				t.Fatalf("row %d: city block %v is not one-hot", r, out.X[r*plan.InputDim+2:r*plan.InputDim+5])
			}
		}
	})
}

// checkWide checks a success of widePlan: no NaN anywhere (a NaN input is an error, NULL or
// clipped, each then imputed), the cyclical inputs in sine/cosine pairs, and at most one
// hash bucket set per row (none for NULL).
func checkWide(t *testing.T, plan *messages.Plan, out *messages.ReadyBatch) {
	t.Helper()
	for r := 0; r < out.Rows(); r++ {
		row := out.X[r*plan.InputDim : (r+1)*plan.InputDim]
		for i, v := range row {
			if v != v {
				t.Fatalf("row %d: input %d is NaN: %v", r, i, row)
			}
		}
		cyc := row[2 : 2+messages.CyclicalWidth]
		for i := 0; i < len(cyc); i += 2 {
			if n := float64(cyc[i])*float64(cyc[i]) + float64(cyc[i+1])*float64(cyc[i+1]); math.Abs(n-1) > 1e-5 && n != 0 {
				t.Fatalf("row %d: cyclical pair %v, %v is not on the unit circle", r, cyc[i], cyc[i+1])
			}
		}
		var set int
		for _, v := range row[len(row)-7:] {
			if v != 0 && v != 1 {
				t.Fatalf("row %d: hash bucket holds %v", r, v)
			}
			set += int(v)
		}
		if set > 1 {
			t.Fatalf("row %d: %d hash buckets set", r, set)
		}
	}
}

type byteSource struct {
	data []byte
	i    int
}

func (s *byteSource) next() byte {
	if len(s.data) == 0 {
		return 0
	}
	b := s.data[s.i%len(s.data)]
	s.i++
	return b
}

func (s *byteSource) next64() uint64 {
	var b [8]byte
	for i := range b {
		b[i] = s.next()
	}
	return binary.LittleEndian.Uint64(b[:])
}
