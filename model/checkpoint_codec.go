package model

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
)

// Every pgtrain checkpoint has one layout: a magic naming its writer, a little-endian
// uint32 header length, the JSON header, then the tensors the header lists as float32
// little-endian, one after another. The headers differ by writer (each says what its model
// needs to resume); the codec below is what they share.

// ErrNotCheckpoint is returned for bytes that do not start with the expected magic.
var ErrNotCheckpoint = errors.New("checkpoint: not a pgtrain checkpoint")

// EncodeCheckpoint writes magic, header (as JSON) and the tensors' values.
func EncodeCheckpoint(magic []byte, header any, tensors [][]float32) ([]byte, error) {
	hj, err := json.Marshal(header)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	total := 0
	for _, t := range tensors {
		total += len(t)
	}
	out := make([]byte, 0, len(magic)+4+len(hj)+4*total)
	out = append(out, magic...)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(hj)))
	out = append(out, hj...)
	for _, t := range tensors {
		for _, v := range t {
			out = binary.LittleEndian.AppendUint32(out, math.Float32bits(v))
		}
	}
	return out, nil
}

// DecodeCheckpointHeader checks the magic of a checkpoint written by EncodeCheckpoint,
// unmarshals its header into header and returns the tensor bytes that follow, for
// DecodeTensors once the header has told the tensors' sizes.
func DecodeCheckpointHeader(b, magic []byte, header any) ([]byte, error) {
	if !bytes.HasPrefix(b, magic) || len(b) < len(magic)+4 {
		return nil, ErrNotCheckpoint
	}
	b = b[len(magic):]
	n := binary.LittleEndian.Uint32(b)
	b = b[4:]
	if uint64(n) > uint64(len(b)) {
		return nil, errors.New("checkpoint: truncated header")
	}
	if err := json.Unmarshal(b[:n], header); err != nil {
		return nil, fmt.Errorf("checkpoint: header: %w", err)
	}
	return b[n:], nil
}

// DecodeTensors splits tensor bytes into tensors of the given value counts, which must
// account for every byte.
func DecodeTensors(data []byte, sizes []int) ([][]float32, error) {
	total := 0
	for _, n := range sizes {
		// Against what is left, so that the sum cannot overflow.
		if n < 0 || n > len(data)/4-total {
			return nil, errors.New("checkpoint: bad tensor size")
		}
		total += n
	}
	if total*4 != len(data) {
		return nil, fmt.Errorf("checkpoint: %d bytes of tensor data, header says %d", len(data), total*4)
	}
	out := make([][]float32, len(sizes))
	off := 0
	for i, n := range sizes {
		v := make([]float32, n)
		for j := range v {
			v[j] = math.Float32frombits(binary.LittleEndian.Uint32(data[off+4*j:]))
		}
		off += 4 * n
		out[i] = v
	}
	return out, nil
}
