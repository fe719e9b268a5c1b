package messages

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"unsafe"

	"github.com/vmihailenco/msgpack/v5"
)

// Raw column kinds: numbers travel as float64, or as float32 when the column's type holds
// only values a float32 represents exactly (real, smallint): half the bytes on the bus, and
// the same values once widened to float64. Everything categorical travels as text.
// A kind is only ever added, never changed: a decoder that knows a kind reads it from any
// writer of the same schema version.
const (
	ColumnFloat64 uint8 = 1
	ColumnText    uint8 = 2
	ColumnFloat32 uint8 = 3
	// ColumnKeyText is one column of a typed key as its key text (KeyColumn.TextSQL): a
	// RawBatch holds these in KeyText, not in Columns.
	ColumnKeyText uint8 = 4
)

// RawColumn is one column of a page, columnar. Exactly one of Float64/Float32/Text is used
// (the one Kind names), with one entry per row; a NULL row has its bit set in Nulls (bit i%8
// of byte i/8) and a zero value.
type RawColumn struct {
	Name    string
	Kind    uint8
	Nulls   []byte
	Float64 []float64
	Float32 []float32
	Text    []string
}

// Len is the number of values the column holds.
func (c *RawColumn) Len() int { return len(c.Float64) + len(c.Float32) + len(c.Text) }

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
	Keys []int64
	// KeyText is a typed key's text, one slice per key column with one value per row; nil
	// for an integer key. It names rows in errors, and a prediction writes it as the key.
	KeyText [][]string
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
	// W is each row's sample weight (len(Keys)) when the plan has a sample weight column,
	// else empty.
	W []float32
	// KeyText is a prediction job's typed key as text (RawBatch.KeyText), which the scorer
	// writes as the output's key; nil otherwise (a training job needs only Keys). It never
	// travels: a prediction's pages go to SCORE as RAW batches and are transformed by the
	// scorer, so EncodeReady refuses a batch that has it.
	KeyText [][]string
}

// Rows is the number of rows in the batch.
func (b *ReadyBatch) Rows() int { return len(b.Keys) }

var errShape = errors.New("inconsistent batch shape")

// EncodeMsgpack writes the batch as a fixed-order array; numbers go as one little-endian
// byte string per column instead of element by element.
func (b *RawBatch) EncodeMsgpack(enc *msgpack.Encoder) error {
	if len(b.KeyText) > MaxKeyColumns {
		return fmt.Errorf("raw batch %s: a key of %d columns: %w", b.BatchID, len(b.KeyText), errShape)
	}
	if err := encodeHeader(enc, 6+(len(b.KeyText)+len(b.Columns))*4, b.BatchID, b.Last); err != nil {
		return err
	}
	if err := writeInt64s(enc, b.Keys); err != nil {
		return err
	}
	// A typed key's text goes first, as text columns of their own kind.
	for i, t := range b.KeyText {
		for _, err := range []error{
			enc.EncodeString(strconv.Itoa(i)),
			enc.EncodeUint8(ColumnKeyText),
			enc.EncodeBytes(nil),
			enc.EncodeBytes(stringsToBytes(t)),
		} {
			if err != nil {
				return err
			}
		}
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
			err = writeFloat64s(enc, c.Float64)
		case ColumnFloat32:
			err = writeFloat32s(enc, c.Float32)
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
	if (n-6)%4 != 0 {
		return fmt.Errorf("raw batch: %d fields: %w", n, errShape)
	}
	if b.Keys, err = readInt64s(dec); err != nil {
		return fmt.Errorf("raw batch keys: %w", err)
	}
	rows := len(b.Keys)
	// Every column takes at least 4 bytes (its four fields): an array length no message
	// could hold must not size the allocation.
	cols := (n - 6) / 4
	if err := fits(dec, 4*cols, fmt.Sprintf("%d columns", cols)); err != nil {
		return fmt.Errorf("raw batch: %w", err)
	}
	b.Columns = make([]RawColumn, 0, capacity(dec, cols))
	b.KeyText = nil
	for i := 0; i < cols; i++ {
		name, err := readString(dec, "column name")
		if err != nil {
			return err
		}
		kind, err := dec.DecodeUint8()
		if err != nil {
			return err
		}
		if kind == ColumnKeyText {
			if err := b.decodeKeyText(dec, rows); err != nil {
				return err
			}
			continue
		}
		b.Columns = append(b.Columns, RawColumn{Name: name, Kind: kind})
		c := &b.Columns[len(b.Columns)-1]
		if c.Nulls, err = readBin(dec, "null bitmap"); err != nil {
			return fmt.Errorf("raw batch column %q: %w", c.Name, err)
		}
		if len(c.Nulls) > (rows+7)/8 {
			return fmt.Errorf("raw batch column %q: null bitmap of %d bytes for %d rows: %w", c.Name, len(c.Nulls), rows, errShape)
		}
		switch c.Kind {
		case ColumnFloat64:
			c.Float64, err = readFloat64s(dec)
			if err == nil && len(c.Float64) != rows {
				err = errShape
			}
		case ColumnFloat32:
			c.Float32, err = readFloat32s(dec)
			if err == nil && len(c.Float32) != rows {
				err = errShape
			}
		case ColumnText:
			var data []byte
			if data, err = readBin(dec, "text"); err != nil {
				return fmt.Errorf("raw batch column %q: %w", c.Name, err)
			}
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

// decodeKeyText reads one key text column (after its name and kind): no nulls, one value
// per row, at most MaxKeyColumns of them.
func (b *RawBatch) decodeKeyText(dec *msgpack.Decoder, rows int) error {
	if len(b.KeyText) == MaxKeyColumns {
		return fmt.Errorf("raw batch: more than %d key columns: %w", MaxKeyColumns, errShape)
	}
	nulls, err := readBin(dec, "key null bitmap")
	if err != nil {
		return fmt.Errorf("raw batch key column %d: %w", len(b.KeyText), err)
	}
	if len(nulls) != 0 {
		return fmt.Errorf("raw batch key column %d: a key is never NULL: %w", len(b.KeyText), errShape)
	}
	t, err := readKeyText(dec, rows)
	if err != nil {
		return fmt.Errorf("raw batch key column %d: %w", len(b.KeyText), err)
	}
	b.KeyText = append(b.KeyText, t)
	return nil
}

// readKeyText reads a text bin of exactly rows values.
func readKeyText(dec *msgpack.Decoder, rows int) ([]string, error) {
	data, err := readBin(dec, "key text")
	if err != nil {
		return nil, err
	}
	t, err := bytesToStrings(data)
	if err == nil && len(t) != rows {
		err = fmt.Errorf("%d key values for %d rows: %w", len(t), rows, errShape)
	}
	return t, err
}

// EncodeMsgpack writes the ready batch; X, Y and Keys go as little-endian byte strings.
func (b *ReadyBatch) EncodeMsgpack(enc *msgpack.Encoder) error {
	if !isProduct(len(b.X), len(b.Keys), b.InputDim) || !isProduct(len(b.Y), len(b.Keys), b.LabelDim) ||
		len(b.W) != 0 && len(b.W) != len(b.Keys) {
		return fmt.Errorf("ready batch %s: %w", b.BatchID, errShape)
	}
	if b.KeyText != nil {
		return fmt.Errorf("ready batch %s: a typed key's text does not travel in READY: %w", b.BatchID, errShape)
	}
	// Sample weights are an eleventh field, written only when there are some: a batch
	// without them is encoded as before.
	fields := 10
	if b.W != nil {
		fields = 11
	}
	if err := encodeHeader(enc, fields, b.BatchID, b.Last); err != nil {
		return err
	}
	if err := enc.EncodeInt(int64(b.InputDim)); err != nil {
		return err
	}
	if err := enc.EncodeInt(int64(b.LabelDim)); err != nil {
		return err
	}
	if err := writeInt64s(enc, b.Keys); err != nil {
		return err
	}
	if err := writeFloat32s(enc, b.X); err != nil {
		return err
	}
	if err := writeFloat32s(enc, b.Y); err != nil {
		return err
	}
	if fields == 10 {
		return nil
	}
	return writeFloat32s(enc, b.W)
}

// DecodeMsgpack reads what EncodeMsgpack wrote, checking the version and the shape.
func (b *ReadyBatch) DecodeMsgpack(dec *msgpack.Decoder) error {
	n, err := decodeHeader(dec, "ready batch", &b.BatchID, &b.Last)
	if err != nil {
		return err
	}
	if n < 10 || n > 11 {
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
	// Appended after what b holds (nothing, but for DecodeReadyAppend); the shape is the
	// appended part's.
	k0, x0, y0, w0 := len(b.Keys), len(b.X), len(b.Y), len(b.W)
	if b.Keys == nil {
		b.Keys = []int64{}
	}
	if b.X == nil {
		b.X = []float32{}
	}
	if b.Y == nil {
		b.Y = []float32{}
	}
	if b.Keys, err = appendInt64s(dec, b.Keys); err != nil {
		return fmt.Errorf("ready batch keys: %w", err)
	}
	if b.X, err = appendFloat32s(dec, b.X); err != nil {
		return fmt.Errorf("ready batch features: %w", err)
	}
	if b.Y, err = appendFloat32s(dec, b.Y); err != nil {
		return fmt.Errorf("ready batch labels: %w", err)
	}
	rows, xs, ys := len(b.Keys)-k0, len(b.X)-x0, len(b.Y)-y0
	if !isProduct(xs, rows, b.InputDim) || !isProduct(ys, rows, b.LabelDim) {
		return fmt.Errorf("ready batch %s: %d keys, %d features of width %d, %d labels of width %d: %w",
			b.BatchID, rows, xs, b.InputDim, ys, b.LabelDim, errShape)
	}
	weighted := false
	if n >= 11 {
		w, err := appendFloat32s(dec, b.W)
		if err != nil {
			return fmt.Errorf("ready batch sample weights: %w", err)
		}
		if ws := len(w) - w0; ws != 0 {
			if ws != rows {
				return fmt.Errorf("ready batch %s: %d keys, %d sample weights: %w", b.BatchID, rows, ws, errShape)
			}
			b.W, weighted = w, true
		}
	}
	// Rows gathered so far are all weighted or all not, as this batch must be.
	if weighted && w0 != k0 || !weighted && w0 != 0 && rows > 0 {
		return fmt.Errorf("ready batch %s: sample weights on %d of %d rows gathered before it: %w",
			b.BatchID, w0, k0, errShape)
	}
	return nil
}

// isProduct reports whether n == rows*width for non-negative rows and width, without the
// overflow of the product: 4 rows of width 2^62 multiply to 0.
func isProduct(n, rows, width int) bool {
	if rows == 0 || width == 0 {
		return n == 0
	}
	return width <= n/rows && rows*width == n
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

// decodeHeader returns the number of fields after the version (the array holds one more).
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
	if id.JobID, err = readString(dec, "job id"); err != nil {
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
func EncodeRaw(b *RawBatch) ([]byte, error) { return marshalSized(b, b.encodedSize()) }

func DecodeRaw(data []byte) (*RawBatch, error) {
	var b RawBatch
	if err := msgpack.Unmarshal(data, &b); err != nil {
		return nil, err
	}
	return &b, nil
}

func EncodeReady(b *ReadyBatch) ([]byte, error) { return marshalSized(b, b.encodedSize()) }

// EncodeReadyInto is EncodeReady writing into buf's memory (from its start, growing it when
// too small): a publisher encoding batch after batch reuses one buffer instead of
// allocating a page-sized one for each.
func EncodeReadyInto(buf []byte, b *ReadyBatch) ([]byte, error) {
	return marshalInto(slices.Grow(buf[:0], b.encodedSize()), b)
}

// DecodeReadyAppend decodes a READY batch into b as DecodeReady does, except that its keys,
// features and labels are appended to those b already holds: a reader gathering many
// batches into one buffer saves a copy and an allocation of each. The batch's own rows are
// the ones after the lengths b had; on an error b's slices may hold a partial batch.
func DecodeReadyAppend(data []byte, b *ReadyBatch) error {
	dec := msgpack.GetDecoder()
	defer msgpack.PutDecoder(dec)
	dec.Reset(bytes.NewReader(data))
	// Not dec.Decode: for a msgpack nil it would zero b, dropping the rows gathered so far.
	return b.DecodeMsgpack(dec)
}

func DecodeReady(data []byte) (*ReadyBatch, error) {
	var b ReadyBatch
	if err := msgpack.Unmarshal(data, &b); err != nil {
		return nil, err
	}
	return &b, nil
}

// Batches are megabytes: encoding one into a buffer that starts small copies it again at
// every doubling, and msgpack's DecodeBytes grows its result 1 MiB at a time. Profiles of the
// pipeline showed the codec as the preprocessor's main cost, so a batch is encoded into a
// buffer of its final size, and number columns are written and read as their memory (on a
// big-endian host through a small chunk) straight from and into their slices.

// marshalSized encodes v into a buffer of capacity size (an upper estimate).
func marshalSized(v any, size int) ([]byte, error) {
	return marshalInto(make([]byte, 0, size), v)
}

// marshalInto encodes v after dst's bytes.
func marshalInto(dst []byte, v any) ([]byte, error) {
	buf := bytes.NewBuffer(dst)
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(buf)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ReadyHeaderBytes bounds what an encoded ReadyBatch holds besides its job id and its
// numbers: the array header (1 byte), the version, pass, range, page and the two widths (at
// most 9 bytes each as msgpack ints), the job id's string header (at most 5), last (1) and
// the bin headers of keys, features, labels and sample weights (at most 5 each).
const ReadyHeaderBytes = 1 + 6*9 + 5 + 1 + 4*5

// ReadyRowBytes is what one row costs in an encoded ReadyBatch: its key and its features,
// labels and sample weights (labelDim counts them: pass LabelDim + WeightDim) as float32.
func ReadyRowBytes(inputDim, labelDim int) int { return 8 + 4*(inputDim+labelDim) }

// ReadyBatchBytes bounds the encoded size of a ReadyBatch of job jobID with rows rows;
// labelDim counts the sample weights, as in ReadyRowBytes.
func ReadyBatchBytes(jobID string, rows, inputDim, labelDim int) int {
	return ReadyHeaderBytes + len(jobID) + rows*ReadyRowBytes(inputDim, labelDim)
}

// rawHeaderBytes bounds the header and the small fields of a RawBatch besides its job id.
const rawHeaderBytes = 64

// KeyTextBytes bounds what a typed key's text adds to an encoded batch: per column its
// name, kind and headers, then per value its offset and bytes.
func KeyTextBytes(text [][]string) int {
	n := 0
	for _, t := range text {
		n += 16 + 4*len(t)
		for _, s := range t {
			n += len(s)
		}
	}
	return n
}

func (b *RawBatch) encodedSize() int {
	n := rawHeaderBytes + len(b.JobID) + 8*len(b.Keys) + KeyTextBytes(b.KeyText)
	for i := range b.Columns {
		c := &b.Columns[i]
		n += 16 + len(c.Name) + len(c.Nulls) + 8*len(c.Float64) + 4*len(c.Float32) + 4*len(c.Text)
		for _, t := range c.Text {
			n += len(t)
		}
	}
	return n
}

func (b *ReadyBatch) encodedSize() int {
	return ReadyHeaderBytes + len(b.JobID) + 8*len(b.Keys) + 4*len(b.X) + 4*len(b.Y) + 4*len(b.W)
}

// chunkBytes is the conversion buffer of the number codecs.
const chunkBytes = 8 << 10

// writeNumbers writes count numbers of width bytes each as one msgpack bin (what
// EncodeBytes would write for the converted slice), converting a chunk at a time: put fills
// chunk with the little-endian bytes of numbers i..i+n-1.
func writeNumbers(enc *msgpack.Encoder, count, width int, put func(chunk []byte, i, n int)) error {
	if err := enc.EncodeBytesLen(width * count); err != nil {
		return err
	}
	chunk := make([]byte, chunkBytes)
	w := enc.Writer()
	for i := 0; i < count; {
		n := min(count-i, chunkBytes/width)
		put(chunk, i, n)
		if _, err := w.Write(chunk[:width*n]); err != nil {
			return err
		}
		i += n
	}
	return nil
}

// littleEndianHost is true where numbers sit in memory in the wire's byte order: a column
// is then written and read as its memory, one copy, instead of a number at a time (the
// conversion loops were a fifth of the pipeline's Go CPU in a profile).
var littleEndianHost = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// memory is the bytes of v; only used where littleEndianHost.
func memory[T int64 | float64 | float32](v []T) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v))), len(v)*int(unsafe.Sizeof(v[0])))
}

// writeNative writes v as one msgpack bin of its little-endian bytes, as writeNumbers does.
func writeNative[T int64 | float64 | float32](enc *msgpack.Encoder, v []T) error {
	b := memory(v)
	if err := enc.EncodeBytesLen(len(b)); err != nil {
		return err
	}
	_, err := enc.Writer().Write(b)
	return err
}

// appendNative reads n numbers straight into dst's memory, when numberBin checked n against
// the message (ok is false otherwise, and nothing was read).
func appendNative[T int64 | float64 | float32](dec *msgpack.Decoder, dst []T, n int) (out []T, ok bool, err error) {
	if !littleEndianHost || capacity(dec, n) != n {
		return dst, false, nil
	}
	base := len(dst)
	out = slices.Grow(dst, n)[:base+n]
	return out, true, dec.ReadFull(memory(out[base:]))
}

func writeInt64s(enc *msgpack.Encoder, v []int64) error {
	if littleEndianHost {
		return writeNative(enc, v)
	}
	return writeNumbers(enc, len(v), 8, func(chunk []byte, i, n int) {
		for j, x := range v[i : i+n] {
			binary.LittleEndian.PutUint64(chunk[8*j:], uint64(x))
		}
	})
}

func writeFloat64s(enc *msgpack.Encoder, v []float64) error {
	if littleEndianHost {
		return writeNative(enc, v)
	}
	return writeNumbers(enc, len(v), 8, func(chunk []byte, i, n int) {
		for j, x := range v[i : i+n] {
			binary.LittleEndian.PutUint64(chunk[8*j:], math.Float64bits(x))
		}
	})
}

func writeFloat32s(enc *msgpack.Encoder, v []float32) error {
	if littleEndianHost {
		return writeNative(enc, v)
	}
	return writeNumbers(enc, len(v), 4, func(chunk []byte, i, n int) {
		for j, x := range v[i : i+n] {
			binary.LittleEndian.PutUint32(chunk[4*j:], math.Float32bits(x))
		}
	})
}

// numberBin reads the header of a bin holding numbers of width bytes each and returns how
// many there are. A length the message cannot hold is refused before anything is allocated.
func numberBin(dec *msgpack.Decoder, width int, what string) (int, error) {
	n, err := dec.DecodeBytesLen()
	if err != nil {
		return 0, err
	}
	if n < 0 { // nil: no values
		return 0, nil
	}
	if n%width != 0 {
		return 0, fmt.Errorf("%d bytes is not a whole number of %s: %w", n, what, errShape)
	}
	if err := fits(dec, n, what); err != nil {
		return 0, err
	}
	return n / width, nil
}

// fits refuses a length longer than what is left of the message, when the reader can tell.
func fits(dec *msgpack.Decoder, n int, what string) error {
	if r, ok := dec.Buffered().(interface{ Len() int }); ok && n > r.Len() {
		return fmt.Errorf("%d bytes of %s in a message with %d left: %w", n, what, r.Len(), errShape)
	}
	return nil
}

// readBin reads a bin (or str) of bytes. msgpack's DecodeBytes and DecodeString allocate
// whatever length a header claims before reading a byte of it, so a few corrupt bytes
// could ask for gigabytes; here the length is checked against the message first.
func readBin(dec *msgpack.Decoder, what string) ([]byte, error) {
	n, err := dec.DecodeBytesLen()
	if err != nil || n < 0 { // nil: no bytes
		return nil, err
	}
	if err := fits(dec, n, what); err != nil {
		return nil, err
	}
	if capacity(dec, n) == n { // checked against the message: read it in place
		out := make([]byte, n)
		return out, dec.ReadFull(out)
	}
	out := make([]byte, 0, capacity(dec, n))
	err = readChunks(dec, n, 1, func(c []byte) { out = append(out, c...) })
	return out, err
}

func readString(dec *msgpack.Decoder, what string) (string, error) {
	b, err := readBin(dec, what)
	return string(b), err
}

// readChunks reads count values of width bytes through a chunk, handing each chunk to put.
func readChunks(dec *msgpack.Decoder, count, width int, put func(chunk []byte)) error {
	chunk := make([]byte, chunkBytes)
	per := chunkBytes / width
	for done := 0; done < count; {
		n := min(count-done, per)
		if err := dec.ReadFull(chunk[:n*width]); err != nil {
			return err
		}
		put(chunk[:n*width])
		done += n
	}
	return nil
}

// capacity is what to allocate for n values: all of them when numberBin could check n
// against the message, otherwise no more than a chunk's worth of trust until they arrive.
func capacity(dec *msgpack.Decoder, n int) int {
	if _, ok := dec.Buffered().(interface{ Len() int }); ok {
		return n
	}
	return min(n, 1<<16)
}

// extend lengthens *s by m and returns the new part.
func extend[T any](s *[]T, m int) []T {
	base := len(*s)
	*s = slices.Grow(*s, m)[:base+m]
	return (*s)[base:]
}

func readInt64s(dec *msgpack.Decoder) ([]int64, error) { return appendInt64s(dec, []int64{}) }

func readFloat64s(dec *msgpack.Decoder) ([]float64, error) { return appendFloat64s(dec, []float64{}) }

func readFloat32s(dec *msgpack.Decoder) ([]float32, error) { return appendFloat32s(dec, []float32{}) }

// appendNumbers reads a bin of numbers of width bytes each and appends them to dst; decode
// fills a chunk's worth of dst from the chunk's bytes.
func appendNumbers[T int64 | float64 | float32](dec *msgpack.Decoder, dst []T, width int, what string, decode func(dst []T, c []byte)) ([]T, error) {
	n, err := numberBin(dec, width, what)
	if err != nil {
		return dst, err
	}
	if out, ok, err := appendNative(dec, dst, n); ok {
		return out, err
	}
	dst = slices.Grow(dst, capacity(dec, n))
	err = readChunks(dec, n, width, func(c []byte) { decode(extend(&dst, len(c)/width), c) })
	return dst, err
}

func appendInt64s(dec *msgpack.Decoder, dst []int64) ([]int64, error) {
	return appendNumbers(dec, dst, 8, "int64s", func(dst []int64, c []byte) {
		for i := range dst {
			dst[i] = int64(binary.LittleEndian.Uint64(c[8*i:]))
		}
	})
}

func appendFloat64s(dec *msgpack.Decoder, dst []float64) ([]float64, error) {
	return appendNumbers(dec, dst, 8, "float64s", func(dst []float64, c []byte) {
		for i := range dst {
			dst[i] = math.Float64frombits(binary.LittleEndian.Uint64(c[8*i:]))
		}
	})
}

func appendFloat32s(dec *msgpack.Decoder, dst []float32) ([]float32, error) {
	return appendNumbers(dec, dst, 4, "float32s", func(dst []float32, c []byte) {
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(c[4*i:]))
		}
	})
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
