package transform

import (
	"encoding/binary"
	"errors"
	"math"
	"testing"

	"pgtrain/messages"
)

// FuzzApply builds a raw batch from the fuzzer's bytes (row count, NULLs, float64 or float32
// values, text drawn partly from the vocabularies, sometimes a wrong column kind or a short
// column) and checks that Apply never panics, that it fails only with a row or batch error,
// and that a success has the shape rows × InputDim and rows × LabelDim (and, with a sample
// weight column, one finite weight >= 0 per row).
func FuzzApply(f *testing.F) {
	f.Add(uint8(3), uint8(0), []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	f.Add(uint8(0), uint8(1), []byte{})
	f.Add(uint8(40), uint8(2), []byte{0xff, 0, 0xff, 0, 7})
	f.Add(uint8(9), uint8(7), []byte("rome paris a b c zebra"))
	f.Add(uint8(5), uint8(64), []byte{0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, nrows, mode uint8, data []byte) {
		enc := []string{messages.EncodeNone, messages.EncodeOneHot, messages.EncodeIndex}[int(mode)%3]
		plan := testPlan(enc)
		if mode&64 != 0 {
			plan.SampleWeight = &messages.ColumnPlan{Name: "w", Kind: messages.KindNumeric, Factor: 1}
		}
		src := byteSource{data: data}
		rows := int(nrows) % 64
		raw := &messages.RawBatch{Keys: make([]int64, rows)}
		for i := range raw.Keys {
			raw.Keys[i] = int64(src.next64())
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
		addCol("age", false)
		addCol("income", false)
		addCol("city", true)
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
