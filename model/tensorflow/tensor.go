//go:build tensorflow

package tensorflow

import (
	"bytes"
	"fmt"
	"unsafe"

	tf "github.com/wamuir/graft/tensorflow"
)

// byteView is v's memory as bytes, in the host's byte order, which is the order TensorFlow
// keeps tensors in.
func byteView(v []float32) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v))), 4*len(v))
}

// floatTensor copies v into a new float32 tensor of the given shape.
func floatTensor(v []float32, shape ...int) (*tf.Tensor, error) {
	dims := make([]int64, len(shape))
	n := 1
	for i, d := range shape {
		dims[i] = int64(d)
		n *= d
	}
	if n != len(v) {
		return nil, fmt.Errorf("%d values for shape %v", len(v), shape)
	}
	return tf.ReadTensor(tf.Float, dims, bytes.NewReader(byteView(v)))
}

// scalarTensor is a float32 scalar.
func scalarTensor(v float32) (*tf.Tensor, error) { return tf.NewTensor(v) }

// sliceWriter copies what it is given into a fixed buffer.
type sliceWriter struct {
	buf []byte
	n   int
}

func (w *sliceWriter) Write(p []byte) (int, error) {
	if len(p) > len(w.buf)-w.n {
		return 0, fmt.Errorf("tensor has more than the %d bytes expected", len(w.buf))
	}
	copy(w.buf[w.n:], p)
	w.n += len(p)
	return len(p), nil
}

// floatsOf copies a float32 tensor's values out, row-major.
func floatsOf(t *tf.Tensor) ([]float32, error) {
	if t.DataType() != tf.Float {
		return nil, fmt.Errorf("tensor of type %v, want float32", t.DataType())
	}
	n := 1
	for _, d := range t.Shape() {
		n *= int(d)
	}
	out := make([]float32, n)
	w := &sliceWriter{buf: byteView(out)}
	if _, err := t.WriteContentsTo(w); err != nil {
		return nil, err
	}
	if w.n != len(w.buf) {
		return nil, fmt.Errorf("tensor has %d bytes, want %d", w.n, len(w.buf))
	}
	return out, nil
}

// scalarOf reads a float32 scalar.
func scalarOf(t *tf.Tensor) (float32, error) {
	v, ok := t.Value().(float32)
	if !ok {
		return 0, fmt.Errorf("tensor %v of type %v is not a float32 scalar", t.Shape(), t.DataType())
	}
	return v, nil
}
