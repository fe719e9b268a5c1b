package messages

import (
	"bytes"
	"errors"
	"io"
	"math"
	"reflect"
	"runtime"
	"slices"
	"strings"
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
			{Name: "r", Kind: ColumnFloat32, Float32: []float32{-0.1, 0, math.MaxFloat32}},
			{Name: "tiny", Kind: ColumnFloat32, Float32: []float32{math.SmallestNonzeroFloat32, float32(math.Inf(1)), -2}},
		},
	}
	b.Columns[0].SetNull(1)
	b.Columns[1].SetNull(1)
	b.Columns[2].SetNull(1)
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

// A float32 column keeps every bit pattern, NaN payloads and negative zero included.
func TestRawBatchFloat32Bits(t *testing.T) {
	bits := []uint32{0x7fc00001, 0xffbfffff, 0x80000000, 0x00000001, 0x7f7fffff, 0xff800000, 0x3dcccccd}
	c := RawColumn{Name: "f", Kind: ColumnFloat32}
	keys := make([]int64, len(bits))
	for i, b := range bits {
		c.Float32 = append(c.Float32, math.Float32frombits(b))
		keys[i] = int64(i)
	}
	data, err := EncodeRaw(&RawBatch{BatchID: BatchID{JobID: "j"}, Keys: keys, Columns: []RawColumn{c}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := DecodeRaw(data)
	if err != nil {
		t.Fatal(err)
	}
	got := out.Columns[0]
	if got.Kind != ColumnFloat32 || len(got.Float32) != len(bits) || got.Float64 != nil || got.Text != nil {
		t.Fatalf("decoded column %+v", got)
	}
	for i, b := range bits {
		if g := math.Float32bits(got.Float32[i]); g != b {
			t.Fatalf("value %d: bits %#08x, want %#08x", i, g, b)
		}
	}
}

func TestRawKind(t *testing.T) {
	tests := []struct {
		name string
		col  ColumnPlan
		want uint8
	}{
		{"real", ColumnPlan{Kind: KindNumeric, PGType: "real"}, ColumnFloat32},
		{"smallint", ColumnPlan{Kind: KindNumeric, PGType: "smallint"}, ColumnFloat32},
		{"integer", ColumnPlan{Kind: KindNumeric, PGType: "integer"}, ColumnFloat64},
		{"bigint", ColumnPlan{Kind: KindNumeric, PGType: "bigint"}, ColumnFloat64},
		{"double precision", ColumnPlan{Kind: KindNumeric, PGType: "double precision"}, ColumnFloat64},
		{"numeric with a typmod", ColumnPlan{Kind: KindNumeric, PGType: "numeric(10,2)"}, ColumnFloat64},
		{"a domain over real goes by its own name", ColumnPlan{Kind: KindNumeric, PGType: "celsius"}, ColumnFloat64},
		{"a domain named like the type", ColumnPlan{Kind: KindNumeric, PGType: `"real"`}, ColumnFloat64},
		{"no type recorded", ColumnPlan{Kind: KindNumeric}, ColumnFloat64},
		{"categorical real", ColumnPlan{Kind: KindCategorical, PGType: "real"}, ColumnText},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.col.RawKind(); got != tt.want {
				t.Fatalf("RawKind() = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestEncodeReadyIntoReusesItsBuffer(t *testing.T) {
	big := &ReadyBatch{BatchID: BatchID{JobID: "j", Range: 1}, InputDim: 2, LabelDim: 1,
		Keys: []int64{1, 2, 3}, X: []float32{1, 2, 3, 4, 5, 6}, Y: []float32{7, 8, 9}}
	small := &ReadyBatch{BatchID: BatchID{JobID: "j", Range: 1, Page: 1}, Last: true, InputDim: 2, LabelDim: 1,
		Keys: []int64{4}, X: []float32{10, 11}, Y: []float32{12}}
	var buf []byte
	for _, b := range []*ReadyBatch{big, small} {
		want, err := EncodeReady(b)
		if err != nil {
			t.Fatal(err)
		}
		prev := buf
		buf, err = EncodeReadyInto(buf, b)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, want) {
			t.Fatalf("batch %s: EncodeReadyInto wrote %x, EncodeReady %x", b.BatchID, buf, want)
		}
		if b == small && &buf[0] != &prev[0] {
			t.Fatal("a smaller batch was encoded into new memory, not into the buffer it was given")
		}
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

// A typed key's text travels in RAW (as key text columns, apart from the data columns),
// value for value, and a batch that claims more or fewer values than rows is refused. It
// never travels in READY: the encoder refuses it and the decoder refuses a twelfth field.
func TestKeyTextRoundTrip(t *testing.T) {
	raw := sampleRaw()
	raw.KeyText = [][]string{{"tenant-1", "tenant-2", "tenant-2"}, {"9", "10", "é'; drop"}}
	data, err := EncodeRaw(raw)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeRaw(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(raw, back) {
		t.Fatalf("round trip changed the batch:\n in %+v\nout %+v", raw, back)
	}
	ready := &ReadyBatch{BatchID: BatchID{JobID: "j"}, InputDim: 1, Keys: []int64{1, 2}, X: []float32{2, 3},
		KeyText: [][]string{{"a", "b"}}}
	if _, err := EncodeReady(ready); !errors.Is(err, errShape) {
		t.Fatalf("encoding a ready batch with key text: %v, want a refusal", err)
	}
	if _, err := DecodeReady(readyWithKeyText(t)); !errors.Is(err, errShape) {
		t.Fatalf("decoding a ready batch with a twelfth field: %v, want a refusal", err)
	}
	raw.KeyText = [][]string{{"a"}}
	data, err = EncodeRaw(raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeRaw(data); err == nil {
		t.Fatal("decoding one key value for three rows succeeded")
	}
}

// Numbers travel as one byte string per column: a page of floats costs 8 bytes per value
// (4 for float32), not the 9 (5) that element-by-element msgpack would take.
func TestRawBatchIsCompact(t *testing.T) {
	tests := []struct {
		name string
		col  RawColumn
		max  int
	}{
		{"float64", RawColumn{Name: "x", Kind: ColumnFloat64, Float64: make([]float64, 1000)}, 16*1000 + 64},
		{"float32", RawColumn{Name: "x", Kind: ColumnFloat32, Float32: make([]float32, 1000)}, 12*1000 + 64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &RawBatch{BatchID: BatchID{JobID: "j"}, Keys: make([]int64, 1000), Columns: []RawColumn{tt.col}}
			for i := range b.Keys {
				b.Keys[i] = int64(i) << 40
				if tt.col.Kind == ColumnFloat64 {
					b.Columns[0].Float64[i] = float64(i) + 0.5
				} else {
					b.Columns[0].Float32[i] = float32(i) + 0.5
				}
			}
			data, err := EncodeRaw(b)
			if err != nil {
				t.Fatal(err)
			}
			if len(data) > tt.max {
				t.Fatalf("1000 rows of key + one %s column take %d bytes, want at most %d", tt.name, len(data), tt.max)
			}
			if size := b.encodedSize(); size < len(data) {
				t.Fatalf("encodedSize %d is under the %d bytes written", size, len(data))
			}
		})
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

// rawMsg frames fields as RawBatch.EncodeMsgpack does: one plain msgpack array.
func rawMsg(t *testing.T, fields ...any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Both batch kinds are plain msgpack arrays, so any msgpack reader (a tool, another
// language) sees every field.
func TestBatchesAreWellFormedMsgpack(t *testing.T) {
	raw, err := EncodeRaw(sampleRaw())
	if err != nil {
		t.Fatal(err)
	}
	ready, err := EncodeReady(&ReadyBatch{BatchID: BatchID{JobID: "j"}, InputDim: 1, LabelDim: 1, Keys: []int64{1}, X: []float32{2}, Y: []float32{3}})
	if err != nil {
		t.Fatal(err)
	}
	for name, tt := range map[string]struct {
		data []byte
		want int
	}{
		"raw":   {raw, 7 + 4*len(sampleRaw().Columns)},
		"ready": {ready, 11},
	} {
		var fields []any
		dec := msgpack.NewDecoder(bytes.NewReader(tt.data))
		if err := dec.Decode(&fields); err != nil {
			t.Fatalf("%s: a generic reader fails: %v", name, err)
		}
		if len(fields) != tt.want {
			t.Fatalf("%s: %d fields, want %d", name, len(fields), tt.want)
		}
		if _, err := dec.DecodeInterface(); err == nil {
			t.Fatalf("%s: bytes left after the array", name)
		}
	}
}

func TestDecodeRejectsBadShapes(t *testing.T) {
	head := []any{SchemaVersion, "j", 0, 0, 0, false}
	msg := func(fields ...any) []any { return append(slices.Clone(head), fields...) }
	tests := []struct {
		name    string
		msg     []any
		wantErr string // "" for a message that decodes
	}{
		{"a well-formed float32 column", msg(make([]byte, 16), "x", ColumnFloat32, []byte{}, make([]byte, 8)), ""},
		{"a well-formed float64 column", msg(make([]byte, 16), "x", ColumnFloat64, []byte{1}, make([]byte, 16)), ""},
		{"keys not whole int64s", msg([]byte{1, 2, 3}), "not a whole number of int64s"},
		{"a column missing a field", msg(make([]byte, 8), "x", ColumnFloat64, []byte{}), "fields"},
		{"column rows differ from keys", msg(make([]byte, 16), "x", ColumnFloat64, []byte{}, make([]byte, 8)), `column "x": inconsistent`},
		{"unknown column kind", msg(make([]byte, 8), "x", uint8(9), []byte{}, make([]byte, 8)), "unknown kind 9"},
		{"text offsets out of range", msg(make([]byte, 8), "x", ColumnText, []byte{}, []byte{1, 0, 0, 0, 9, 0, 0, 0}), "out of order"},
		{"bitmap longer than rows", msg(make([]byte, 8), "x", ColumnFloat64, []byte{0, 0}, make([]byte, 8)), "null bitmap of 2 bytes"},
		{"float32 rows differ from keys", msg(make([]byte, 8), "x", ColumnFloat32, []byte{}, make([]byte, 8)), `column "x": inconsistent`},
		{"float32s not whole", msg(make([]byte, 8), "x", ColumnFloat32, []byte{}, make([]byte, 6)), "not a whole number of float32s"},
		{"float32 bytes read as float64s", msg(make([]byte, 16), "x", ColumnFloat64, []byte{}, make([]byte, 8)), `column "x": inconsistent`},
		{"float32 bitmap longer than rows", msg(make([]byte, 8), "x", ColumnFloat32, []byte{0, 0}, make([]byte, 4)), "null bitmap of 2 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeRaw(rawMsg(t, tt.msg...))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// A length header that claims more than the message holds is refused before anything is
// allocated: a corrupt message of a few bytes must not ask for gigabytes.
func TestDecodeRefusesLengthsPastTheMessage(t *testing.T) {
	huge := []byte{0xdb, 0xc4, 0x01, 0x28, 0xc4} // str32 of 3.3 GB
	hugeBin := []byte{0xc6, 0xc4, 0x01, 0x28, 0xc4}
	header := func(job []byte) []byte {
		return append(append([]byte{0x9a, 0x01}, job...), 0, 0, 0, 0xc3, 0xc4, 8, 0, 0, 0, 0, 0, 0, 0, 0)
	}
	col := func(name []byte, kind byte, nulls, values []byte) []byte {
		out := append(header([]byte{0xa1, 'j'}), name...)
		out = append(out, kind)
		out = append(out, nulls...)
		return append(out, values...)
	}
	tests := []struct {
		name string
		msg  []byte
	}{
		{"job id", header(huge)},
		{"column name", col(huge, ColumnFloat64, []byte{0xc4, 0}, []byte{0xc4, 8, 0, 0, 0, 0, 0, 0, 0, 0})},
		{"null bitmap", col([]byte{0xa1, 'x'}, ColumnFloat64, hugeBin, nil)},
		{"null bitmap as str", col([]byte{0xa1, 'x'}, ColumnFloat64, huge, nil)},
		{"text", col([]byte{0xa1, 'x'}, ColumnText, []byte{0xc4, 0}, hugeBin)},
		{"float32s", col([]byte{0xa1, 'x'}, ColumnFloat32, []byte{0xc4, 0}, hugeBin)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := DecodeRaw(tt.msg)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, errShape) {
				t.Fatalf("err = %v, want a shape error", err)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
				t.Fatalf("decoding %d bytes allocated %d bytes", len(tt.msg), grew)
			}
		})
	}
}

func FuzzDecodeRaw(f *testing.F) {
	seed, _ := EncodeRaw(sampleRaw())
	f.Add(seed)
	typed := sampleRaw()
	typed.KeyText = [][]string{{"a", "b", "c"}, {"2024-01-01 00:00:00.000000", "", "x"}}
	seed, _ = EncodeRaw(typed)
	f.Add(seed)
	f.Add([]byte{0x90})
	f.Add([]byte{0xdd, 0x80, 0, 0, 0, 0x01}) // an array of 2^31 fields
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := DecodeRaw(data)
		if err != nil {
			return
		}
		if len(b.KeyText) > MaxKeyColumns {
			t.Fatalf("%d key text columns", len(b.KeyText))
		}
		for i, kt := range b.KeyText {
			if len(kt) != b.Rows() {
				t.Fatalf("key text column %d has %d values for %d rows", i, len(kt), b.Rows())
			}
		}
		for _, c := range b.Columns {
			if n := c.Len(); n != b.Rows() {
				t.Fatalf("column %q has %d values for %d rows", c.Name, n, b.Rows())
			}
			var want int
			switch c.Kind {
			case ColumnFloat64:
				want = len(c.Float64)
			case ColumnFloat32:
				want = len(c.Float32)
			case ColumnText:
				want = len(c.Text)
			default:
				t.Fatalf("column %q decoded with unknown kind %d", c.Name, c.Kind)
			}
			if want != b.Rows() {
				t.Fatalf("column %q of kind %d holds its values in another slice", c.Name, c.Kind)
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
	weighted, _ := EncodeReady(&ReadyBatch{BatchID: BatchID{JobID: "j"}, InputDim: 1, LabelDim: 1, Keys: []int64{1, 2}, X: []float32{2, 3}, Y: []float32{3, 4}, W: []float32{0.5, 2}})
	f.Add(weighted)
	f.Add(readyWithWidth(f, 1<<62)) // 4 rows of width 2^62: the product overflowed to 0
	f.Add(readyWithKeyText(f))      // the key text field READY once had: refused
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := DecodeReady(data)
		// Appended after another batch's rows (weighted as it is), the same bytes decode the
		// same way (a bare msgpack nil, an empty batch to DecodeReady, is refused).
		prev := readyOf(BatchID{JobID: "prev"}, 3, 2, 1)
		if err == nil && b.W != nil {
			prev.W = []float32{1, 2, 3}
		}
		appendErr := DecodeReadyAppend(data, &prev)
		if err != nil && appendErr == nil {
			t.Fatalf("DecodeReady: %v, but DecodeReadyAppend took it", err)
		}
		if err != nil {
			return
		}
		if !shapeHolds(len(b.X), b.Rows(), b.InputDim) || !shapeHolds(len(b.Y), b.Rows(), b.LabelDim) ||
			b.W != nil && len(b.W) != b.Rows() {
			t.Fatalf("shape: %d rows, X %d (width %d), Y %d (width %d), W %d", b.Rows(), len(b.X), b.InputDim, len(b.Y), b.LabelDim, len(b.W))
		}
		if b.KeyText != nil {
			t.Fatalf("key text decoded from READY: %q", b.KeyText)
		}
		if appendErr != nil {
			if len(data) > 0 && data[0] != 0xc0 { // nil
				t.Fatalf("DecodeReady took it, DecodeReadyAppend: %v", appendErr)
			}
			return
		}
		sameBits := func(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) } // NaNs too
		if !slices.Equal(prev.Keys[3:], b.Keys) || !slices.EqualFunc(prev.X[6:], b.X, sameBits) || !slices.EqualFunc(prev.Y[3:], b.Y, sameBits) ||
			b.W != nil && !slices.EqualFunc(prev.W[3:], b.W, sameBits) {
			t.Fatal("DecodeReadyAppend appended other rows than DecodeReady decoded")
		}
	})
}

// DecodeReadyAppend gathers batches into one buffer, each checked on its own shape.
func TestDecodeReadyAppend(t *testing.T) {
	first := readyOf(BatchID{JobID: "j", Page: 0}, 3, 2, 1)
	second := readyOf(BatchID{JobID: "j", Page: 1}, 2, 2, 1)
	for i := range second.Keys {
		second.Keys[i] += 10
		second.X[2*i] = float32(i) + 0.5
	}
	var got ReadyBatch
	for _, b := range []*ReadyBatch{&first, &second} {
		data, err := EncodeReady(b)
		if err != nil {
			t.Fatal(err)
		}
		if err := DecodeReadyAppend(data, &got); err != nil {
			t.Fatal(err)
		}
	}
	if got.BatchID != second.BatchID || got.InputDim != 2 || got.LabelDim != 1 {
		t.Fatalf("header of the last batch: got %+v", got.BatchID)
	}
	if want := append(slices.Clone(first.Keys), second.Keys...); !slices.Equal(got.Keys, want) {
		t.Fatalf("keys %v, want %v", got.Keys, want)
	}
	if want := append(slices.Clone(first.X), second.X...); !slices.Equal(got.X, want) {
		t.Fatalf("features %v, want %v", got.X, want)
	}
	if want := append(slices.Clone(first.Y), second.Y...); !slices.Equal(got.Y, want) {
		t.Fatalf("labels %v, want %v", got.Y, want)
	}
	// A batch whose features do not match its own keys is refused, whatever came before:
	// 2 keys and 5 features of width 2 would pass as 3+2 keys and 6+5... only if the check
	// looked at the whole buffer.
	bad := readyOf(BatchID{JobID: "j"}, 2, 2, 1)
	bad.X = bad.X[:3]
	enc := msgpack.NewEncoder(&bytes.Buffer{})
	var buf bytes.Buffer
	enc.Reset(&buf)
	if err := encodeHeader(enc, 10, bad.BatchID, false); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{enc.EncodeInt(2), enc.EncodeInt(1), writeInt64s(enc, bad.Keys), writeFloat32s(enc, bad.X), writeFloat32s(enc, bad.Y)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	odd := ReadyBatch{Keys: []int64{1}, X: []float32{1}, Y: []float32{1}}
	if err := DecodeReadyAppend(buf.Bytes(), &odd); !errors.Is(err, errShape) {
		t.Fatalf("a batch of 2 keys and 3 features of width 2: %v, want a shape error", err)
	}
}

// Sample weights travel with their rows, and a batch's weights must match its keys and
// the rows gathered before it.
func TestReadyBatchSampleWeights(t *testing.T) {
	first := readyOf(BatchID{JobID: "j"}, 3, 2, 1)
	first.W = []float32{0.5, 0, 2}
	second := readyOf(BatchID{JobID: "j", Page: 1}, 2, 2, 1)
	second.W = []float32{1, 3}
	var got ReadyBatch
	for _, b := range []*ReadyBatch{&first, &second} {
		data, err := EncodeReady(b)
		if err != nil {
			t.Fatal(err)
		}
		if err := DecodeReadyAppend(data, &got); err != nil {
			t.Fatal(err)
		}
	}
	if want := []float32{0.5, 0, 2, 1, 3}; !slices.Equal(got.W, want) {
		t.Fatalf("sample weights %v, want %v", got.W, want)
	}
	plain := readyOf(BatchID{JobID: "j"}, 2, 2, 1)
	data, err := EncodeReady(&plain)
	if err != nil {
		t.Fatal(err)
	}
	if err := DecodeReadyAppend(data, &got); !errors.Is(err, errShape) {
		t.Fatalf("an unweighted batch after weighted rows: %v, want a shape error", err)
	}
	weightedData, err := EncodeReady(&second)
	if err != nil {
		t.Fatal(err)
	}
	unweighted := readyOf(BatchID{JobID: "j"}, 1, 2, 1)
	if err := DecodeReadyAppend(weightedData, &unweighted); !errors.Is(err, errShape) {
		t.Fatalf("a weighted batch after unweighted rows: %v, want a shape error", err)
	}
	short := second
	short.W = short.W[:1]
	if _, err := EncodeReady(&short); !errors.Is(err, errShape) {
		t.Fatalf("encoding 2 keys with 1 sample weight: %v, want a shape error", err)
	}
	// Two keys, one weight, written by hand: the decoder refuses it.
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	if err := encodeHeader(enc, 11, short.BatchID, false); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{enc.EncodeInt(2), enc.EncodeInt(1), writeInt64s(enc, short.Keys), writeFloat32s(enc, short.X), writeFloat32s(enc, short.Y), writeFloat32s(enc, short.W)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := DecodeReady(buf.Bytes()); !errors.Is(err, errShape) {
		t.Fatalf("decoding 2 keys with 1 sample weight: %v, want a shape error", err)
	}
}

func FuzzDecodePlan(f *testing.F) {
	seed, _ := EncodePlan(&Plan{JobID: "j", Ranges: []KeyRange{{Lo: 1, Hi: 2}}})
	f.Add(seed)
	f.Add(planClaiming(1 << 31)) // 15 bytes that made msgpack allocate 2^31 columns
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = DecodePlan(data) // must not panic
	})
}

func TestReadyBatchBytes(t *testing.T) {
	long := "j123456789012345678901234567890123456789012345678901234567890123" // 64 characters
	tests := []struct {
		name  string
		batch ReadyBatch
	}{
		{name: "empty", batch: ReadyBatch{BatchID: BatchID{JobID: "j"}, Last: true, InputDim: 3, LabelDim: 1}},
		{name: "small", batch: readyOf(BatchID{JobID: "job-1", Pass: 1, Range: 2, Page: 3}, 100, 7, 2)},
		{
			name:  "widest header",
			batch: weightedReadyOf(BatchID{JobID: long, Pass: math.MaxInt64, Range: math.MaxInt64, Page: math.MaxInt64}, 1<<14, 1, 1),
		},
		{name: "weighted", batch: weightedReadyOf(BatchID{JobID: "job-2", Pass: 1}, 50, 3, 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.batch
			data, err := EncodeReady(&b)
			if err != nil {
				t.Fatal(err)
			}
			weights := 0
			if b.W != nil {
				weights = 1
			}
			bound := ReadyBatchBytes(b.JobID, b.Rows(), b.InputDim, b.LabelDim+weights)
			if len(data) > bound {
				t.Fatalf("encoded %d bytes, over the bound %d", len(data), bound)
			}
			// With pass, range and page at their widest and every bin over 64 KiB, the bound
			// is exact but for the fields that are small here: the version and the two widths
			// (one byte each, not nine) and the 64-character job id's string header (two
			// bytes, not five).
			if b.Rows() == 1<<14 && bound-len(data) != 3*8+3 {
				t.Fatalf("encoded %d bytes, bound %d: off by %d, want 27", len(data), bound, bound-len(data))
			}
		})
	}
}

func weightedReadyOf(id BatchID, rows, in, lab int) ReadyBatch {
	b := readyOf(id, rows, in, lab)
	b.W = make([]float32, rows)
	return b
}

func readyOf(id BatchID, rows, in, lab int) ReadyBatch {
	b := ReadyBatch{BatchID: id, InputDim: in, LabelDim: lab, Keys: make([]int64, rows), X: make([]float32, rows*in), Y: make([]float32, rows*lab)}
	for i := range b.Keys {
		b.Keys[i] = int64(i)
	}
	return b
}

// The columns written as memory (little-endian hosts) and number by number (the path of
// big-endian hosts, and of a decoder that cannot check lengths against the message) are the
// same bytes and decode to the same batch.
func TestNumberCodecsAgree(t *testing.T) {
	if !littleEndianHost {
		t.Skip("the native path is only taken on little-endian hosts")
	}
	ready := readyOf(BatchID{JobID: "j", Pass: 1, Range: 2, Page: 3}, 5, 3, 2)
	for i := range ready.X {
		ready.X[i] = float32(i) - 7.25
	}
	encode := func(native bool) (raw, rdy []byte) {
		t.Helper()
		littleEndianHost = native
		defer func() { littleEndianHost = true }()
		var err error
		if raw, err = EncodeRaw(sampleRaw()); err != nil {
			t.Fatal(err)
		}
		if rdy, err = EncodeReady(&ready); err != nil {
			t.Fatal(err)
		}
		return raw, rdy
	}
	nativeRaw, nativeReady := encode(true)
	loopRaw, loopReady := encode(false)
	if !bytes.Equal(nativeRaw, loopRaw) || !bytes.Equal(nativeReady, loopReady) {
		t.Fatal("the native and the converting encoders wrote different bytes")
	}
	// A decoder over a plain io.Reader cannot check lengths, so it reads in chunks.
	var streamed RawBatch
	if err := msgpack.NewDecoder(struct{ io.Reader }{bytes.NewReader(nativeRaw)}).Decode(&streamed); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&streamed, sampleRaw()) {
		t.Fatalf("chunked decode:\n got %+v\nwant %+v", &streamed, sampleRaw())
	}
	var streamedReady ReadyBatch
	if err := msgpack.NewDecoder(struct{ io.Reader }{bytes.NewReader(nativeReady)}).Decode(&streamedReady); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(streamedReady, ready) {
		t.Fatalf("chunked decode:\n got %+v\nwant %+v", streamedReady, ready)
	}
}

// readyWithKeyText is a weighted ready batch with a twelfth field after its weights: an
// array of one key text column, as a prediction's READY batch once carried.
func readyWithKeyText(tb testing.TB) []byte {
	tb.Helper()
	data, err := EncodeReady(&ReadyBatch{BatchID: BatchID{JobID: "j"}, InputDim: 1, Keys: []int64{1, 2}, X: []float32{2, 3}, W: []float32{1, 1}})
	if err != nil {
		tb.Fatal(err)
	}
	if data[0] != 0x9c { // fixarray of 12: the version, then eleven fields
		tb.Fatalf("ready batch starts with %#x, want an array of 12", data[0])
	}
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	if err := enc.EncodeArrayLen(1); err != nil {
		tb.Fatal(err)
	}
	if err := enc.EncodeBytes(stringsToBytes([]string{"a", "b"})); err != nil {
		tb.Fatal(err)
	}
	out := append([]byte{0x9d}, data[1:]...)
	return append(out, buf.Bytes()...)
}
