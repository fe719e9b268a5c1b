package messages

import (
	"encoding/binary"
	"fmt"
)

// CheckLengths walks a msgpack message without decoding it and refuses any array, map,
// string, binary or extension whose claimed length does not fit in the bytes that follow.
// msgpack v5.4.1 sizes a slice from the claimed length before it reads an element (its
// allocation limit is never applied: decode_slice.go tests the flag against 1, not 0), so a
// 16-byte message could ask for gigabytes; after this check every slice it makes is bounded
// by the message's size. It takes time linear in the number of values and no memory.
// Batches do not need it: their decoders check each length as they read it, after the
// version, so that a page from a newer writer is reported as such.
func CheckLengths(b []byte) error {
	i := 0
	for pending := 1; pending > 0; pending-- {
		if i >= len(b) {
			return fmt.Errorf("msgpack: %d bytes end before the last value: %w", len(b), errShape)
		}
		c := b[i]
		i++
		var items, skip uint64 // values that follow, or bytes to skip
		switch {
		case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3: // fixints, nil, bools
		case c&0xf0 == 0x80: // fixmap
			items = 2 * uint64(c&0x0f)
		case c&0xf0 == 0x90: // fixarray
			items = uint64(c & 0x0f)
		case c&0xe0 == 0xa0: // fixstr
			skip = uint64(c & 0x1f)
		default:
			w, ok := lengthWidth[c]
			if !ok {
				return fmt.Errorf("msgpack: byte 0x%02x at offset %d: %w", c, i-1, errShape)
			}
			n, err := readLength(b, &i, w.len)
			if err != nil {
				return err
			}
			switch w.kind {
			case kindFixed:
				skip = uint64(w.fixed)
			case kindBytes:
				skip = n
			case kindExt:
				skip = n + 1 // and the type byte
			case kindArray:
				items = n
			case kindMap:
				items = 2 * n
			}
		}
		left := uint64(len(b) - i)
		if skip > left {
			return fmt.Errorf("msgpack: %d bytes claimed at offset %d with %d left: %w", skip, i, left, errShape)
		}
		i += int(skip)
		// Every value still to come takes at least one byte.
		if items > left || uint64(pending-1)+items > left {
			return fmt.Errorf("msgpack: %d values claimed at offset %d with %d bytes left: %w", items, i, left, errShape)
		}
		pending += int(items)
	}
	return nil
}

type lengthKind uint8

const (
	kindFixed lengthKind = iota // a value of fixed bytes after the code
	kindBytes                   // str or bin: a length, then that many bytes
	kindExt                     // ext: a length, a type byte, then that many bytes
	kindArray
	kindMap
)

// lengthWidth describes the codes after which a length (len bytes, big-endian) or a fixed
// payload follows.
var lengthWidth = map[byte]struct {
	kind  lengthKind
	len   int
	fixed int
}{
	0xc4: {kindBytes, 1, 0}, 0xc5: {kindBytes, 2, 0}, 0xc6: {kindBytes, 4, 0}, // bin
	0xd9: {kindBytes, 1, 0}, 0xda: {kindBytes, 2, 0}, 0xdb: {kindBytes, 4, 0}, // str
	0xc7: {kindExt, 1, 0}, 0xc8: {kindExt, 2, 0}, 0xc9: {kindExt, 4, 0},
	0xdc: {kindArray, 2, 0}, 0xdd: {kindArray, 4, 0},
	0xde: {kindMap, 2, 0}, 0xdf: {kindMap, 4, 0},
	0xca: {kindFixed, 0, 4}, 0xcb: {kindFixed, 0, 8}, // floats
	0xcc: {kindFixed, 0, 1}, 0xcd: {kindFixed, 0, 2}, 0xce: {kindFixed, 0, 4}, 0xcf: {kindFixed, 0, 8}, // uints
	0xd0: {kindFixed, 0, 1}, 0xd1: {kindFixed, 0, 2}, 0xd2: {kindFixed, 0, 4}, 0xd3: {kindFixed, 0, 8}, // ints
	0xd4: {kindFixed, 0, 2}, 0xd5: {kindFixed, 0, 3}, 0xd6: {kindFixed, 0, 5}, 0xd7: {kindFixed, 0, 9}, 0xd8: {kindFixed, 0, 17}, // fixext
}

// readLength reads a big-endian length of w bytes at b[*i].
func readLength(b []byte, i *int, w int) (uint64, error) {
	if len(b)-*i < w {
		return 0, fmt.Errorf("msgpack: length at offset %d cut short: %w", *i, errShape)
	}
	var n uint64
	switch w {
	case 1:
		n = uint64(b[*i])
	case 2:
		n = uint64(binary.BigEndian.Uint16(b[*i:]))
	case 4:
		n = uint64(binary.BigEndian.Uint32(b[*i:]))
	}
	*i += w
	return n, nil
}
