package pgbinary

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
)

// ErrFormat is a value whose bytes are not the binary form of its type.
var ErrFormat = errors.New("malformed binary value")

// Seconds from 1970-01-01 (Unix) to 2000-01-01 (PostgreSQL's epoch), and days.
const (
	pgEpochSeconds = 946_684_800
	pgEpochDays    = 10_957
)

// Bool is a boolean as 0 or 1.
func Bool(v []byte) (float32, error) {
	if len(v) != 1 || v[0] > 1 {
		return 0, fmt.Errorf("boolean of %d bytes: %w", len(v), ErrFormat)
	}
	return float32(v[0]), nil
}

// BoolText is a boolean's text form ("t" or "f") as 0 or 1.
func BoolText(v []byte) (float32, error) {
	switch string(v) {
	case "t":
		return 1, nil
	case "f":
		return 0, nil
	}
	return 0, fmt.Errorf("boolean %q: %w", v, ErrFormat)
}

// DateSeconds is a date as seconds since 1970-01-01 (its midnight read as UTC); the dates
// 'infinity' and '-infinity' are ±Inf.
func DateSeconds(v []byte) (float64, error) {
	if len(v) != 4 {
		return 0, fmt.Errorf("date of %d bytes: %w", len(v), ErrFormat)
	}
	switch d := int32(binary.BigEndian.Uint32(v)); d {
	case math.MaxInt32:
		return math.Inf(1), nil
	case math.MinInt32:
		return math.Inf(-1), nil
	default:
		return float64((int64(d) + pgEpochDays) * 86400), nil // exact: |d| < 2^31
	}
}

// TimestampSeconds is a timestamp or timestamptz (microseconds since 2000-01-01; UTC for a
// timestamptz) as seconds since 1970-01-01, the exact value rounded once to float64, as
// extract(epoch from ...)::float8 gives it; 'infinity' and '-infinity' are ±Inf.
func TimestampSeconds(v []byte) (float64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("timestamp of %d bytes: %w", len(v), ErrFormat)
	}
	us := int64(binary.BigEndian.Uint64(v))
	switch us {
	case math.MaxInt64:
		return math.Inf(1), nil
	case math.MinInt64:
		return math.Inf(-1), nil
	}
	const off = pgEpochSeconds * 1_000_000
	if us >= math.MaxInt64-off {
		// Past the year 292277: the Unix microseconds overflow an int64.
		x := new(big.Int).Add(big.NewInt(us), big.NewInt(off))
		f, _ := new(big.Rat).SetFrac(x, big.NewInt(1_000_000)).Float64()
		return f, nil
	}
	return UnixMicroSeconds(us + off), nil
}

// UnixMicroSeconds is microseconds since 1970-01-01 as seconds, the exact value rounded
// once to float64.
func UnixMicroSeconds(u int64) float64 {
	if u > -(1<<53) && u < 1<<53 {
		return float64(u) / 1e6 // both exact, so the division rounds once
	}
	// Past the year 2255 float64(u) would round too: divide exactly.
	f, _ := new(big.Rat).SetFrac(big.NewInt(u), big.NewInt(1_000_000)).Float64()
	return f
}

// LengthError is an array of another length than the column's.
type LengthError struct{ Got, Want int }

func (e *LengthError) Error() string {
	return fmt.Sprintf("an array of %d elements, want %d", e.Got, e.Want)
}

// Array element types.
const (
	Float4OID = 700
	Float8OID = 701
)

// Array walks a one-dimensional array of float4 (elemOID Float4OID) or float8 elements
// holding want of them, calling each with every element's index and bytes (nil for NULL).
// An array of another length is a *LengthError (an empty array has length 0); a
// multi-dimensional one or a value whose lengths do not add up is ErrFormat. Nothing is
// allocated.
func Array(v []byte, elemOID uint32, want int, each func(j int, elem []byte)) error {
	size := 4
	if elemOID == Float8OID {
		size = 8
	}
	if len(v) < 12 {
		return fmt.Errorf("array of %d bytes: %w", len(v), ErrFormat)
	}
	ndim := int32(binary.BigEndian.Uint32(v))
	if oid := binary.BigEndian.Uint32(v[8:]); oid != elemOID {
		return fmt.Errorf("array of element type oid %d, want %d: %w", oid, elemOID, ErrFormat)
	}
	switch ndim {
	case 0:
		if want != 0 {
			return &LengthError{Got: 0, Want: want}
		}
		return nil
	case 1:
	default:
		return fmt.Errorf("array of %d dimensions, want 1: %w", ndim, ErrFormat)
	}
	if len(v) < 20 {
		return fmt.Errorf("array of %d bytes: %w", len(v), ErrFormat)
	}
	n := int64(int32(binary.BigEndian.Uint32(v[12:])))
	if n != int64(want) {
		if n < 0 {
			return fmt.Errorf("array of %d elements: %w", n, ErrFormat)
		}
		return &LengthError{Got: int(n), Want: want}
	}
	// Every element takes at least its 4-byte length: check before walking.
	p := v[20:]
	if int64(len(p)) < 4*n {
		return fmt.Errorf("array of %d elements in %d bytes: %w", n, len(p), ErrFormat)
	}
	for j := 0; j < want; j++ {
		if len(p) < 4 {
			return fmt.Errorf("array element %d: %w", j, ErrFormat)
		}
		l := int32(binary.BigEndian.Uint32(p))
		p = p[4:]
		if l == -1 {
			each(j, nil)
			continue
		}
		if int(l) != size || len(p) < size {
			return fmt.Errorf("array element %d of %d bytes, want %d: %w", j, l, size, ErrFormat)
		}
		each(j, p[:size:size])
		p = p[size:]
	}
	if len(p) != 0 {
		return fmt.Errorf("%d bytes after the array's elements: %w", len(p), ErrFormat)
	}
	return nil
}

// Float decodes a float4 or float8 element as float64 (a float4 widens exactly).
func Float(elem []byte) float64 {
	if len(elem) == 4 {
		return float64(math.Float32frombits(binary.BigEndian.Uint32(elem)))
	}
	return math.Float64frombits(binary.BigEndian.Uint64(elem))
}
