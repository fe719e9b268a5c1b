package coordinator

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"
)

// copyStream encodes rows (a nil field is NULL) as a binary COPY stream.
func copyStream(rows [][][]byte) []byte {
	b := append([]byte{}, copySignature...)
	b = binary.BigEndian.AppendUint32(b, 0) // flags
	b = binary.BigEndian.AppendUint32(b, 0) // no header extension
	for _, r := range rows {
		b = binary.BigEndian.AppendUint16(b, uint16(len(r)))
		for _, f := range r {
			if f == nil {
				b = binary.BigEndian.AppendUint32(b, 0xffffffff)
				continue
			}
			b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
			b = append(b, f...)
		}
	}
	return binary.BigEndian.AppendUint16(b, 0xffff)
}

// readCopy feeds stream to a copyReader of width fields in writes cut at the cuts, and
// returns the rows it saw (copied: fields are valid only during the call).
func readCopy(stream []byte, fields int, cuts []int) ([][][]byte, error) {
	var got [][][]byte
	r := newCopyReader(fields, func(f [][]byte) error {
		row := make([][]byte, len(f))
		for i, v := range f {
			if v != nil {
				row[i] = append([]byte{}, v...)
			}
		}
		got = append(got, row)
		return nil
	})
	prev := 0
	for _, c := range append(cuts, len(stream)) {
		c = min(max(c, prev), len(stream))
		if _, err := r.Write(stream[prev:c]); err != nil {
			return got, err
		}
		prev = c
	}
	return got, r.finish()
}

func TestCopyReader(t *testing.T) {
	rows := [][][]byte{
		{[]byte("alpha"), nil, {}},
		{[]byte{1, 2, 3, 4}, []byte("x"), nil},
	}
	stream := copyStream(rows)
	tests := []struct {
		name    string
		stream  []byte
		fields  int
		cuts    []int
		wantErr string
	}{
		{name: "one write", stream: stream, fields: 3},
		{name: "a write per byte", stream: stream, fields: 3, cuts: func() []int {
			var c []int
			for i := range stream {
				c = append(c, i)
			}
			return c
		}()},
		{name: "cut inside the header and a field", stream: stream, fields: 3, cuts: []int{7, 25, 30}},
		{name: "no trailer", stream: stream[:len(stream)-2], fields: 3, wantErr: errCopyTrailer.Error()},
		{name: "wrong width", stream: stream, fields: 2, wantErr: "a row of 3 fields, want 2"},
		{name: "not COPY", stream: bytes.Repeat([]byte("x"), 40), fields: 3, wantErr: "no binary COPY signature"},
		{name: "negative length", stream: append(copyStream(nil)[:19], 0, 1, 0xff, 0xff, 0xff, 0xfe), fields: 1, wantErr: "a field of -2 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readCopy(tt.stream, tt.fields, tt.cuts)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(rows) {
				t.Fatalf("%d rows, want %d", len(got), len(rows))
			}
			for i := range rows {
				for j := range rows[i] {
					if (got[i][j] == nil) != (rows[i][j] == nil) || !bytes.Equal(got[i][j], rows[i][j]) {
						t.Fatalf("row %d: got %q, want %q", i, got[i], rows[i])
					}
				}
			}
		})
	}
}

// Any bytes, cut anywhere: no panic, and a well-formed stream reads the same rows however
// it is cut.
func FuzzCopyReader(f *testing.F) {
	f.Add(copyStream([][][]byte{{[]byte("a"), nil}, {{}, []byte{1, 2, 3, 4, 5, 6, 7, 8}}}), 2, 5)
	f.Add([]byte("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\xff\xff\xff\xff"), 1, 3)
	f.Fuzz(func(t *testing.T, stream []byte, fields int, cut int) {
		fields = min(max(fields, 0), 64)
		whole, errWhole := readCopy(stream, fields, nil)
		split, errSplit := readCopy(stream, fields, []int{cut})
		if (errWhole == nil) != (errSplit == nil) || len(whole) != len(split) {
			t.Fatalf("whole: %d rows, %v; cut at %d: %d rows, %v", len(whole), errWhole, cut, len(split), errSplit)
		}
		for i := range whole {
			if !slices.EqualFunc(whole[i], split[i], bytes.Equal) {
				t.Fatalf("row %d: %q, cut: %q", i, whole[i], split[i])
			}
		}
	})
}
