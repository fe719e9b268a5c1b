package messages

import (
	"errors"
	"math/bits"
	"runtime"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// planClaiming is a plan of 15 bytes whose features array claims n elements.
func planClaiming(n uint32) []byte {
	b := append([]byte{0x81, 0xa8}, "features"...)
	return append(b, 0xdd, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// readyWithWidth is a READY batch of 4 rows whose feature width is claimed as width, with
// no features at all: 4 * 2^62 overflows to 0.
func readyWithWidth(t testing.TB, width int64) []byte {
	b, err := msgpack.Marshal([]any{SchemaVersion, "j", 0, 0, 0, false, width, 1, make([]byte, 32), []byte{}, make([]byte, 16)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCheckLengths(t *testing.T) {
	plan, err := EncodePlan(&Plan{JobID: "j", Features: []ColumnPlan{{Name: "a", Vocabulary: []string{"x", "y"}}}, Ranges: []KeyRange{{Lo: 1, Hi: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := EncodeRaw(sampleRaw())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		msg     []byte
		wantErr bool
	}{
		{name: "a plan", msg: plan},
		{name: "a raw batch", msg: raw},
		{name: "every scalar kind", msg: []byte{0x93, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, 0xd4, 1, 2, 0xc7, 1, 5, 'x'}},
		{name: "empty", msg: nil, wantErr: true},
		{name: "array32 of 2^31", msg: planClaiming(1 << 31), wantErr: true},
		{name: "array32 of the bytes left plus one", msg: []byte{0xdd, 0, 0, 0, 2, 0xc0}, wantErr: true},
		{name: "map16 with half its values", msg: []byte{0xde, 0, 1, 0xc0}, wantErr: true},
		{name: "nested arrays claiming the same bytes", msg: []byte{0x92, 0x92, 0xc0, 0xc0}, wantErr: true},
		{name: "str32 past the end", msg: []byte{0xdb, 0x7f, 0xff, 0xff, 0xff, 'x'}, wantErr: true},
		{name: "bin8 past the end", msg: []byte{0xc4, 2, 'x'}, wantErr: true},
		{name: "ext32 past the end", msg: []byte{0xc9, 0x7f, 0xff, 0xff, 0xff, 1}, wantErr: true},
		{name: "length cut short", msg: []byte{0xdc, 0}, wantErr: true},
		{name: "float64 cut short", msg: []byte{0xcb, 0, 0}, wantErr: true},
		{name: "the never-used code", msg: []byte{0xc1}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckLengths(tt.msg)
			if tt.wantErr != (err != nil) {
				t.Fatalf("CheckLengths(% x) = %v, want an error: %v", tt.msg, err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, errShape) {
				t.Fatalf("err = %v, want a shape error", err)
			}
		})
	}
}

// A plan in KV is read by every role: a few bytes claiming a long array must not make
// msgpack allocate for it (its allocation limit is off in v5.4.1).
func TestDecodePlanRefusesLengthsPastTheMessage(t *testing.T) {
	msg := planClaiming(1 << 20) // 2^31 in the fuzz seeds; this is enough to see it
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := DecodePlan(msg)
	runtime.ReadMemStats(&after)
	if err == nil || !errors.Is(err, errShape) {
		t.Fatalf("err = %v, want a shape error", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Fatalf("decoding a %d-byte plan allocated %d bytes", len(msg), grew)
	}
}

func TestDecodeReadyRefusesAnOverflowingShape(t *testing.T) {
	if _, err := DecodeReady(readyWithWidth(t, 0)); err != nil {
		t.Fatalf("4 rows of width 0 with no features: %v", err)
	}
	for _, width := range []int64{1 << 62, 1<<62 + 1, 1 << 61} {
		_, err := DecodeReady(readyWithWidth(t, width))
		if err == nil || !strings.Contains(err.Error(), "inconsistent") {
			t.Fatalf("4 rows of width %d with no features: err = %v, want a shape error", width, err)
		}
	}
	b := &ReadyBatch{BatchID: BatchID{JobID: "j"}, InputDim: 1 << 62, LabelDim: 1, Keys: make([]int64, 4), Y: make([]float32, 4)}
	if _, err := EncodeReady(b); err == nil {
		t.Fatal("encoded 4 rows of width 2^62 with no features")
	}
}

// shapeHolds is rows*width == n computed without overflow, for the fuzz checks.
func shapeHolds(n, rows, width int) bool {
	hi, lo := bits.Mul64(uint64(rows), uint64(width))
	return width >= 0 && hi == 0 && lo == uint64(n)
}
