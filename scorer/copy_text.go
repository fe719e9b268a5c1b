package scorer

import (
	"fmt"
	"math"
	"strconv"
)

// appendCopyRow appends one row in COPY's text format: the values tab-separated, the row
// ended by a newline. A typed key's output rows go this way, so that PostgreSQL reads each
// key's text with its column type's input function (binary COPY needs the exact type).
func appendCopyRow(b []byte, row []any) ([]byte, error) {
	for i, v := range row {
		if i > 0 {
			b = append(b, '\t')
		}
		var err error
		if b, err = appendCopyValue(b, v); err != nil {
			return b, fmt.Errorf("column %d: %w", i+1, err)
		}
	}
	return append(b, '\n'), nil
}

// appendCopyValue appends one value of an output row: key text and class names as
// escaped text, a real as the shortest text that reads back as the same float32, and a
// real[] as an array literal of such reals.
func appendCopyValue(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return append(b, `\N`...), nil
	case string:
		return appendCopyText(b, v), nil
	case float32:
		return appendReal(b, v), nil
	case int64:
		return strconv.AppendInt(b, v, 10), nil
	case []float32:
		b = append(b, '{')
		for i, f := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendReal(b, f)
		}
		return append(b, '}'), nil
	}
	return b, fmt.Errorf("a value of type %T has no COPY text form", v)
}

// appendCopyText escapes what COPY's text format gives a meaning to: the backslash, and
// the tab, newline and carriage return that would end a value or a row.
func appendCopyText(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			b = append(b, `\\`...)
		case '\t':
			b = append(b, `\t`...)
		case '\n':
			b = append(b, `\n`...)
		case '\r':
			b = append(b, `\r`...)
		default:
			b = append(b, c)
		}
	}
	return b
}

// appendReal writes f as PostgreSQL's real input reads it back exactly.
func appendReal(b []byte, f float32) []byte {
	switch {
	case math.IsNaN(float64(f)):
		return append(b, "NaN"...)
	case math.IsInf(float64(f), 1):
		return append(b, "Infinity"...)
	case math.IsInf(float64(f), -1):
		return append(b, "-Infinity"...)
	}
	return strconv.AppendFloat(b, float64(f), 'g', -1, 32)
}
