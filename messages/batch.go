package messages

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/vmihailenco/msgpack/v5"
)

// Raw column kinds: numbers travel as float64, everything categorical as text.
const (
	ColumnFloat64 uint8 = 1
	ColumnText    uint8 = 2
)

// RawColumn is one column of a page, columnar. Exactly one of Float64/Text is used, with one
// entry per row; a NULL row has its bit set in Nulls (bit i%8 of byte i/8) and a zero value.
type RawColumn struct {
	Name    string
	Kind    uint8
	Nulls   []byte
	Float64 []float64
	Text    []string
}

// IsNull reports whether row i is NULL.
func (c *RawColumn) IsNull(i int) bool {
	return len(c.Nulls) > i/8 && c.Nulls[i/8]&(1<<(i%8)) != 0
}

// SetNull marks row i NULL, growing the bitmap as needed.
func (c *RawColumn) SetNull(i int) {
	for len(c.Nulls) <= i/8 {
		c.Nulls = append(c.Nulls, 0)
	}
	c.Nulls[i/8] |= 1 << (i % 8)
}

// RawBatch is one keyset page of one range, as read from PostgreSQL.
type RawBatch struct {
	BatchID
	// Last is set on the final page of a range (an empty range has one empty, last page).
	Last bool
	// Keys in ascending order; the page's rows.
	Keys    []int64
	Columns []RawColumn
}

// Rows is the number of rows in the page.
func (b *RawBatch) Rows() int { return len(b.Keys) }

// ReadyBatch is a page after preprocessing: a dense row-major float32 feature matrix,
// its labels and the row keys.
type ReadyBatch struct {
	BatchID
	Last     bool
	InputDim int
	LabelDim int
	Keys     []int64
	X        []float32 // len(Keys) * InputDim
	Y        []float32 // len(Keys) * LabelDim
}

// Rows is the number of rows in the batch.
func (b *ReadyBatch) Rows() int { return len(b.Keys) }

var errShape = errors.New("inconsistent batch shape")

// EncodeMsgpack writes the batch as a fixed-order array; numbers go as one little-endian
// byte string per column instead of element by element.
func (b *RawBatch) EncodeMsgpack(enc *msgpack.Encoder) error {
	if err := encodeHeader(enc, 5+len(b.Columns)*4, b.BatchID, b.Last); err != nil {
		return err
	}
	if err := enc.EncodeBytes(int64sToBytes(b.Keys)); err != nil {
		return err
	}
	for i := range b.Columns {
		c := &b.Columns[i]
		if err := enc.EncodeString(c.Name); err != nil {
			return err
		}
		if err := enc.EncodeUint8(c.Kind); err != nil {
			return err
		}
		if err := enc.EncodeBytes(c.Nulls); err != nil {
			return err
		}
		var err error
		switch c.Kind {
		case ColumnFloat64:
			err = enc.EncodeBytes(float64sToBytes(c.Float64))
		case ColumnText:
			err = enc.EncodeBytes(stringsToBytes(c.Text))
		default:
			err = fmt.Errorf("column %q: unknown kind %d", c.Name, c.Kind)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// DecodeMsgpack reads what EncodeMsgpack wrote, checking the version and every length.
func (b *RawBatch) DecodeMsgpack(dec *msgpack.Decoder) error {
	n, err := decodeHeader(dec, "raw batch", &b.BatchID, &b.Last)
	if err != nil {
		return err
	}
	if (n-5)%4 != 0 {
		return fmt.Errorf("raw batch: %d fields: %w", n, errShape)
	}
	kb, err := dec.DecodeBytes()
	if err != nil {
		return err
	}
	if b.Keys, err = bytesToInt64s(kb); err != nil {
		return fmt.Errorf("raw batch keys: %w", err)
	}
	rows := len(b.Keys)
	b.Columns = make([]RawColumn, (n-5)/4)
	for i := range b.Columns {
		c := &b.Columns[i]
		if c.Name, err = dec.DecodeString(); err != nil {
			return err
		}
		if c.Kind, err = dec.DecodeUint8(); err != nil {
			return err
		}
		if c.Nulls, err = dec.DecodeBytes(); err != nil {
			return err
		}
		if len(c.Nulls) > (rows+7)/8 {
			return fmt.Errorf("raw batch column %q: null bitmap of %d bytes for %d rows: %w", c.Name, len(c.Nulls), rows, errShape)
		}
		data, err := dec.DecodeBytes()
		if err != nil {
			return err
		}
		switch c.Kind {
		case ColumnFloat64:
			c.Float64, err = bytesToFloat64s(data)
			if err == nil && len(c.Float64) != rows {
				err = errShape
			}
		case ColumnText:
			c.Text, err = bytesToStrings(data)
			if err == nil && len(c.Text) != rows {
				err = errShape
			}
		default:
			err = fmt.Errorf("unknown kind %d", c.Kind)
		}
		if err != nil {
			return fmt.Errorf("raw batch column %q: %w", c.Name, err)
		}
	}
	return nil
}

// EncodeMsgpack writes the ready batch; X, Y and Keys go as little-endian byte strings.
func (b *ReadyBatch) EncodeMsgpack(enc *msgpack.Encoder) error {
	if len(b.X) != len(b.Keys)*b.InputDim || len(b.Y) != len(b.Keys)*b.LabelDim {
		return fmt.Errorf("ready batch %s: %w", b.BatchID, errShape)
	}
	if err := encodeHeader(enc, 10, b.BatchID, b.Last); err != nil {
		return err
	}
	for _, err := range []error{
		enc.EncodeInt(int64(b.InputDim)),
		enc.EncodeInt(int64(b.LabelDim)),
		enc.EncodeBytes(int64sToBytes(b.Keys)),
		enc.EncodeBytes(float32sToBytes(b.X)),
		enc.EncodeBytes(float32sToBytes(b.Y)),
	} {
		if err != nil {
			return err
		}
	}
	return nil
}

// DecodeMsgpack reads what EncodeMsgpack wrote, checking the version and the shape.
func (b *ReadyBatch) DecodeMsgpack(dec *msgpack.Decoder) error {
	n, err := decodeHeader(dec, "ready batch", &b.BatchID, &b.Last)
	if err != nil {
		return err
	}
	if n != 10 {
		return fmt.Errorf("ready batch: %d fields: %w", n, errShape)
	}
	if b.InputDim, err = dec.DecodeInt(); err != nil {
		return err
	}
	if b.LabelDim, err = dec.DecodeInt(); err != nil {
		return err
	}
	if b.InputDim < 0 || b.LabelDim < 0 {
		return fmt.Errorf("ready batch: negative width: %w", errShape)
	}
	var raw [3][]byte
	for i := range raw {
		if raw[i], err = dec.DecodeBytes(); err != nil {
			return err
		}
	}
	if b.Keys, err = bytesToInt64s(raw[0]); err != nil {
		return fmt.Errorf("ready batch keys: %w", err)
	}
	if b.X, err = bytesToFloat32s(raw[1]); err != nil {
		return fmt.Errorf("ready batch features: %w", err)
	}
	if b.Y, err = bytesToFloat32s(raw[2]); err != nil {
		return fmt.Errorf("ready batch labels: %w", err)
	}
	if len(b.X) != len(b.Keys)*b.InputDim || len(b.Y) != len(b.Keys)*b.LabelDim {
		return fmt.Errorf("ready batch %s: %d keys, %d features of width %d, %d labels of width %d: %w",
			b.BatchID, len(b.Keys), len(b.X), b.InputDim, len(b.Y), b.LabelDim, errShape)
	}
	return nil
}

// header: [version, job, pass, range, page, last, ...]
func encodeHeader(enc *msgpack.Encoder, fields int, id BatchID, last bool) error {
	for _, err := range []error{
		enc.EncodeArrayLen(fields + 1),
		enc.EncodeInt(SchemaVersion),
		enc.EncodeString(id.JobID),
		enc.EncodeInt(int64(id.Pass)),
		enc.EncodeInt(int64(id.Range)),
		enc.EncodeInt(int64(id.Page)),
		enc.EncodeBool(last),
	} {
		if err != nil {
			return err
		}
	}
	return nil
}

// decodeHeader returns the number of fields after the version.
func decodeHeader(dec *msgpack.Decoder, kind string, id *BatchID, last *bool) (int, error) {
	n, err := dec.DecodeArrayLen()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", kind, err)
	}
	if n < 6 {
		return 0, fmt.Errorf("%s: %d fields: %w", kind, n, errShape)
	}
	v, err := dec.DecodeInt()
	if err != nil {
		return 0, fmt.Errorf("%s version: %w", kind, err)
	}
	if err := checkVersion(kind, v); err != nil {
		return 0, err
	}
	if id.JobID, err = dec.DecodeString(); err != nil {
		return 0, err
	}
	if id.Pass, err = dec.DecodeInt(); err != nil {
		return 0, err
	}
	if id.Range, err = dec.DecodeInt(); err != nil {
		return 0, err
	}
	if id.Page, err = dec.DecodeInt(); err != nil {
		return 0, err
	}
	if *last, err = dec.DecodeBool(); err != nil {
		return 0, err
	}
	return n - 1, nil
}

// EncodeRaw, DecodeRaw, EncodeReady and DecodeReady are the bus payloads.
func EncodeRaw(b *RawBatch) ([]byte, error) { return msgpack.Marshal(b) }

func DecodeRaw(data []byte) (*RawBatch, error) {
	var b RawBatch
	if err := msgpack.Unmarshal(data, &b); err != nil {
		return nil, err
	}
	return &b, nil
}

func EncodeReady(b *ReadyBatch) ([]byte, error) { return msgpack.Marshal(b) }

func DecodeReady(data []byte) (*ReadyBatch, error) {
	var b ReadyBatch
	if err := msgpack.Unmarshal(data, &b); err != nil {
		return nil, err
	}
	return &b, nil
}

func int64sToBytes(v []int64) []byte {
	out := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(out[8*i:], uint64(x))
	}
	return out
}

func bytesToInt64s(b []byte) ([]int64, error) {
	if len(b)%8 != 0 {
		return nil, fmt.Errorf("%d bytes is not a whole number of int64s: %w", len(b), errShape)
	}
	out := make([]int64, len(b)/8)
	for i := range out {
		out[i] = int64(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return out, nil
}

func float64sToBytes(v []float64) []byte {
	out := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(out[8*i:], math.Float64bits(x))
	}
	return out
}

func bytesToFloat64s(b []byte) ([]float64, error) {
	if len(b)%8 != 0 {
		return nil, fmt.Errorf("%d bytes is not a whole number of float64s: %w", len(b), errShape)
	}
	out := make([]float64, len(b)/8)
	for i := range out {
		out[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return out, nil
}

func float32sToBytes(v []float32) []byte {
	out := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(x))
	}
	return out
}

func bytesToFloat32s(b []byte) ([]float32, error) {
	if len(b)%4 != 0 {
		return nil, fmt.Errorf("%d bytes is not a whole number of float32s: %w", len(b), errShape)
	}
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out, nil
}

// Text columns: a uint32 count, the uint32 end offset of each string, then the bytes.
func stringsToBytes(v []string) []byte {
	total := 0
	for _, s := range v {
		total += len(s)
	}
	out := make([]byte, 4+4*len(v), 4+4*len(v)+total)
	binary.LittleEndian.PutUint32(out, uint32(len(v)))
	end := 0
	for i, s := range v {
		end += len(s)
		binary.LittleEndian.PutUint32(out[4+4*i:], uint32(end))
	}
	for _, s := range v {
		out = append(out, s...)
	}
	return out
}

func bytesToStrings(b []byte) ([]string, error) {
	if len(b) < 4 {
		return nil, fmt.Errorf("text column of %d bytes: %w", len(b), errShape)
	}
	n := int(binary.LittleEndian.Uint32(b))
	if n > (len(b)-4)/4 {
		return nil, fmt.Errorf("text column claims %d values in %d bytes: %w", n, len(b), errShape)
	}
	data := b[4+4*n:]
	all := string(data) // one allocation shared by every value
	out := make([]string, n)
	start := 0
	for i := range out {
		end := int(binary.LittleEndian.Uint32(b[4+4*i:]))
		if end < start || end > len(data) {
			return nil, fmt.Errorf("text value %d: offset %d out of order or past %d bytes: %w", i, end, len(data), errShape)
		}
		out[i] = all[start:end]
		start = end
	}
	return out, nil
}
