package messages

import (
	"errors"
	"math"
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func sampleRaw() *RawBatch {
	b := &RawBatch{
		BatchID: BatchID{JobID: "job-1", Pass: 2, Range: 7, Page: 3},
		Last:    true,
		Keys:    []int64{-5, 0, math.MaxInt64},
		Columns: []RawColumn{
			{Name: "x", Kind: ColumnFloat64, Float64: []float64{1.5, 0, math.Inf(-1)}},
			{Name: "city", Kind: ColumnText, Text: []string{"Zürich", "", "Oslo"}},
		},
	}
	b.Columns[0].SetNull(1)
	b.Columns[1].SetNull(1)
	return b
}

func TestRawBatchRoundTrip(t *testing.T) {
	in := sampleRaw()
	data, err := EncodeRaw(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := DecodeRaw(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip changed the batch:\n in %+v\nout %+v", in, out)
	}
	if !out.Columns[0].IsNull(1) || out.Columns[0].IsNull(0) || out.Columns[0].IsNull(2) {
		t.Fatal("null bitmap not preserved")
	}
}

func TestReadyBatchRoundTrip(t *testing.T) {
	in := &ReadyBatch{
		BatchID:  BatchID{JobID: "j", Pass: 0, Range: 1, Page: 0},
		InputDim: 2, LabelDim: 1,
		Keys: []int64{1, 2},
		X:    []float32{1, 2, 3, float32(math.NaN())},
		Y:    []float32{0.5, -1},
	}
	data, err := EncodeReady(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := DecodeReady(data)
	if err != nil {
		t.Fatal(err)
	}
	if out.BatchID != in.BatchID || out.InputDim != 2 || out.LabelDim != 1 || !reflect.DeepEqual(out.Keys, in.Keys) {
		t.Fatalf("header changed: %+v", out)
	}
	for i := range in.X {
		if math.Float32bits(in.X[i]) != math.Float32bits(out.X[i]) {
			t.Fatalf("X[%d] = %v, want %v", i, out.X[i], in.X[i])
		}
	}
	if _, err := EncodeReady(&ReadyBatch{InputDim: 3, Keys: []int64{1}, X: []float32{1}}); err == nil {
		t.Fatal("encoding a batch whose X does not match its shape succeeded")
	}
}

// Numbers travel as one byte string per column: a page of floats costs 8 bytes per value,
// not the 9 that element-by-element msgpack would take.
func TestRawBatchIsCompact(t *testing.T) {
	b := &RawBatch{BatchID: BatchID{JobID: "j"}, Keys: make([]int64, 1000),
		Columns: []RawColumn{{Name: "x", Kind: ColumnFloat64, Float64: make([]float64, 1000)}}}
	for i := range b.Keys {
		b.Keys[i] = int64(i) << 40
		b.Columns[0].Float64[i] = float64(i) + 0.5
	}
	data, err := EncodeRaw(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 16*1000+64 {
		t.Fatalf("1000 rows of key + one float column take %d bytes, want at most %d", len(data), 16*1000+64)
	}
}

func TestDecodeRejectsUnknownVersion(t *testing.T) {
	tests := []struct {
		name   string
		decode func([]byte) error
	}{
		{"raw", func(b []byte) error { _, err := DecodeRaw(b); return err }},
		{"ready", func(b []byte) error { _, err := DecodeReady(b); return err }},
		{"plan", func(b []byte) error { _, err := DecodePlan(b); return err }},
	}
	future, err := msgpack.Marshal([]any{SchemaVersion + 1, "j", 0, 0, 0, false, []byte{}})
	if err != nil {
		t.Fatal(err)
	}
	futurePlan, err := msgpack.Marshal(map[string]any{"v": SchemaVersion + 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := future
			if tt.name == "plan" {
				data = futurePlan
			}
			if err := tt.decode(data); !errors.Is(err, ErrUnknownVersion) {
				t.Fatalf("err = %v, want ErrUnknownVersion", err)
			}
		})
	}
}

func TestDecodeRejectsBadShapes(t *testing.T) {
	tests := []struct {
		name string
		msg  []any
	}{
		{"keys not whole int64s", []any{SchemaVersion, "j", 0, 0, 0, false, []byte{1, 2, 3}}},
		{"column rows differ from keys", []any{SchemaVersion, "j", 0, 0, 0, false, make([]byte, 16), "x", ColumnFloat64, []byte{}, make([]byte, 8)}},
		{"unknown column kind", []any{SchemaVersion, "j", 0, 0, 0, false, make([]byte, 8), "x", uint8(9), []byte{}, make([]byte, 8)}},
		{"text offsets out of range", []any{SchemaVersion, "j", 0, 0, 0, false, make([]byte, 8), "x", ColumnText, []byte{}, []byte{1, 0, 0, 0, 9, 0, 0, 0}}},
		{"bitmap longer than rows", []any{SchemaVersion, "j", 0, 0, 0, false, make([]byte, 8), "x", ColumnFloat64, []byte{0, 0}, make([]byte, 8)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := msgpack.Marshal(tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := DecodeRaw(data); err == nil {
				t.Fatal("decoding succeeded, want an error")
			}
		})
	}
}

func FuzzDecodeRaw(f *testing.F) {
	seed, _ := EncodeRaw(sampleRaw())
	f.Add(seed)
	f.Add([]byte{0x90})
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := DecodeRaw(data)
		if err != nil {
			return
		}
		for _, c := range b.Columns {
			n := len(c.Float64) + len(c.Text)
			if n != b.Rows() {
				t.Fatalf("column %q has %d values for %d rows", c.Name, n, b.Rows())
			}
		}
		again, err := EncodeRaw(b)
		if err != nil {
			t.Fatalf("re-encoding a decoded batch: %v", err)
		}
		if _, err := DecodeRaw(again); err != nil {
			t.Fatalf("decoding a re-encoded batch: %v", err)
		}
	})
}

func FuzzDecodeReady(f *testing.F) {
	seed, _ := EncodeReady(&ReadyBatch{BatchID: BatchID{JobID: "j"}, InputDim: 1, LabelDim: 1, Keys: []int64{1}, X: []float32{2}, Y: []float32{3}})
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := DecodeReady(data)
		if err != nil {
			return
		}
		if len(b.X) != b.Rows()*b.InputDim || len(b.Y) != b.Rows()*b.LabelDim {
			t.Fatalf("shape: %d rows, X %d (width %d), Y %d (width %d)", b.Rows(), len(b.X), b.InputDim, len(b.Y), b.LabelDim)
		}
	})
}

func FuzzDecodePlan(f *testing.F) {
	seed, _ := EncodePlan(&Plan{JobID: "j", Ranges: []KeyRange{{Lo: 1, Hi: 2}}})
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = DecodePlan(data) // must not panic
	})
}
