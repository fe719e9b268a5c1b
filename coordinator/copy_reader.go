package coordinator

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// copySignature opens every binary COPY stream.
var copySignature = []byte("PGCOPY\n\xff\r\n\x00")

// errCopyTrailer is a binary COPY stream that ended before its trailer.
var errCopyTrailer = errors.New("the COPY stream ended without its trailer")

// copyReader splits a binary COPY stream (pgconn's CopyTo hands it one Write per CopyData
// message) into rows of a fixed number of fields and hands each row to row: a field is nil
// for NULL, else a slice of the stream that is valid only during the call. A row split
// across two writes is kept until its end arrives; nothing is allocated per row.
type copyReader struct {
	row     func(fields [][]byte) error
	fields  [][]byte
	pending []byte
	header  bool
	done    bool
}

func newCopyReader(fields int, row func([][]byte) error) *copyReader {
	return &copyReader{row: row, fields: make([][]byte, fields)}
}

func (d *copyReader) Write(p []byte) (int, error) {
	n := len(p)
	buffered := len(d.pending) > 0
	if buffered {
		d.pending = append(d.pending, p...)
		p = d.pending
	}
	used, err := d.decode(p)
	if err != nil {
		return 0, err
	}
	if buffered {
		d.pending = d.pending[:copy(d.pending, p[used:])]
	} else {
		d.pending = append(d.pending, p[used:]...)
	}
	return n, nil
}

// finish reports a stream that ended early.
func (d *copyReader) finish() error {
	if !d.done {
		return errCopyTrailer
	}
	return nil
}

// decode consumes the header and whole rows of p and returns how many bytes it used.
func (d *copyReader) decode(p []byte) (int, error) {
	off := 0
	if !d.header {
		const fixed = 19 // signature, flags, extension length
		if len(p) < fixed {
			return 0, nil
		}
		if !bytes.Equal(p[:len(copySignature)], copySignature) {
			return 0, errors.New("no binary COPY signature")
		}
		ext := int64(binary.BigEndian.Uint32(p[15:fixed]))
		if int64(len(p)) < fixed+ext {
			return 0, nil
		}
		off, d.header = fixed+int(ext), true
	}
	for !d.done {
		if len(p)-off < 2 {
			return off, nil
		}
		nf := int16(binary.BigEndian.Uint16(p[off:]))
		if nf == -1 {
			d.done = true
			return len(p), nil
		}
		if int(nf) != len(d.fields) {
			return 0, fmt.Errorf("a row of %d fields, want %d", nf, len(d.fields))
		}
		// The whole row first, so a partial one is left for the next write.
		q := off + 2
		for i := range d.fields {
			if len(p)-q < 4 {
				return off, nil
			}
			l := int32(binary.BigEndian.Uint32(p[q:]))
			q += 4
			switch {
			case l == -1:
				d.fields[i] = nil
			case l < 0:
				return 0, fmt.Errorf("a field of %d bytes", l)
			case int64(len(p)-q) < int64(l):
				return off, nil
			default:
				d.fields[i] = p[q : q+int(l) : q+int(l)]
				q += int(l)
			}
		}
		if err := d.row(d.fields); err != nil {
			return 0, err
		}
		off = q
	}
	return len(p), nil
}
