package messages

import (
	"crypto/md5"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// MaxKeyColumns is the most columns a composite key may have.
const MaxKeyColumns = 3

// KeyColumns is the spec's key: one column, or up to MaxKeyColumns for a composite key. It
// is written as a string for one column (as before composite keys) and a list otherwise,
// and either is read.
type KeyColumns []string

// String joins the columns with ", ", as a row constructor lists them.
func (k KeyColumns) String() string { return strings.Join(k, ", ") }

// Set takes a comma-separated list (a command-line flag).
func (k *KeyColumns) Set(s string) error {
	*k = nil
	for _, c := range strings.Split(s, ",") {
		if c = strings.TrimSpace(c); c != "" {
			*k = append(*k, c)
		}
	}
	return nil
}

// MarshalJSON writes one column as a string, more as a list.
func (k KeyColumns) MarshalJSON() ([]byte, error) {
	if len(k) == 1 {
		return json.Marshal(k[0])
	}
	return json.Marshal([]string(k))
}

// UnmarshalJSON reads a string or a list of strings.
func (k *KeyColumns) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*k = KeyColumns{one}
		if one == "" {
			*k = nil
		}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("key: a column name or a list of column names: %w", err)
	}
	*k = many
	return nil
}

// EncodeMsgpack writes one column as a string (what plans stored before composite keys
// hold), more as an array.
func (k KeyColumns) EncodeMsgpack(enc *msgpack.Encoder) error {
	if len(k) == 1 {
		return enc.EncodeString(k[0])
	}
	return enc.Encode([]string(k))
}

// DecodeMsgpack reads a string or an array of at most MaxKeyColumns strings.
func (k *KeyColumns) DecodeMsgpack(dec *msgpack.Decoder) error {
	c, err := dec.PeekCode()
	if err != nil {
		return err
	}
	if msgpcode.IsString(c) {
		s, err := dec.DecodeString()
		*k = KeyColumns{s}
		return err
	}
	if c == msgpcode.Nil {
		*k = nil
		return dec.DecodeNil()
	}
	n, err := dec.DecodeArrayLen()
	if err != nil {
		return err
	}
	if n < 0 || n > MaxKeyColumns {
		return fmt.Errorf("key of %d columns, at most %d", n, MaxKeyColumns)
	}
	out := make(KeyColumns, n)
	for i := range out {
		if out[i], err = dec.DecodeString(); err != nil {
			return err
		}
	}
	*k = out
	return nil
}

// Check checks the list on its own: one to MaxKeyColumns distinct names.
func (k KeyColumns) Check() error {
	if len(k) == 0 {
		return &FieldError{Field: "key", Reason: "is required"}
	}
	if len(k) > MaxKeyColumns {
		return &FieldError{Field: "key", Reason: fmt.Sprintf("%d columns; a key has at most %d", len(k), MaxKeyColumns)}
	}
	for i, c := range k {
		if strings.TrimSpace(c) == "" {
			return &FieldError{Field: fmt.Sprintf("key[%d]", i), Reason: "is required"}
		}
		if slices.Contains(k[:i], c) {
			return &FieldError{Field: fmt.Sprintf("key[%d]", i), Reason: fmt.Sprintf("column %q is listed twice", c)}
		}
	}
	return nil
}

// Key value forms: how a key column's values are written as text. The text is what bounds
// and resume points carry and what the checksum hashes, so it must not depend on session
// settings: times are written in UTC by a fixed pattern, everything else by its own output
// function (whose result does not depend on settings for the accepted types).
const (
	KeyFormText        = ""            // col::text
	KeyFormTimestamptz = "timestamptz" // UTC, 'YYYY-MM-DD HH24:MI:SS.US'
	KeyFormTimestamp   = "timestamp"   // 'YYYY-MM-DD HH24:MI:SS.US'
	KeyFormDate        = "date"        // 'YYYY-MM-DD'
)

// KeyColumn is one column of a typed key in a plan: its name, its type as format_type
// writes it (to cast a bound back), its text form, and its collation (quoted schema and
// name, "" for a type without one), which orders its keys: a stored model's last key means
// "after" only in the order it was read in. The collation is never spliced into SQL.
type KeyColumn struct {
	Name      string `msgpack:"name" json:"name"`
	Type      string `msgpack:"type" json:"type"`
	Form      string `msgpack:"form,omitempty" json:"form,omitempty"`
	Collation string `msgpack:"collation,omitempty" json:"collation,omitempty"`
}

// TextSQL is the column's value as key text.
func (c KeyColumn) TextSQL() string {
	col := pgx.Identifier{c.Name}.Sanitize()
	switch c.Form {
	case KeyFormTimestamptz:
		return "to_char(" + col + " at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"
	case KeyFormTimestamp:
		return "to_char(" + col + ", 'YYYY-MM-DD HH24:MI:SS.US')"
	case KeyFormDate:
		return "to_char(" + col + ", 'YYYY-MM-DD')"
	}
	return col + "::text"
}

// ValueSQL turns the text parameter $n back into a value of the column's type. Type comes
// from format_type and is checked by ValidKeyType before it is spliced.
func (c KeyColumn) ValueSQL(n int) string {
	return c.CastSQL("$" + strconv.Itoa(n))
}

// CastSQL turns the text expression p (a parameter, or a text column) holding key text
// back into a value of the column's type, as ValueSQL does.
func (c KeyColumn) CastSQL(p string) string {
	p += "::text"
	switch c.Form {
	case KeyFormTimestamptz:
		return "(" + p + "::timestamp at time zone 'UTC')"
	case KeyFormTimestamp:
		return p + "::timestamp"
	case KeyFormDate:
		return p + "::date"
	}
	return p + "::" + c.Type
}

// ValidKeyType reports whether t (a format_type name) may be spliced into a cast: letters,
// digits, spaces, underscores, dots, commas, parentheses and double quotes as format_type
// writes them, nothing that ends the expression.
func ValidKeyType(t string) bool {
	if t == "" || len(t) > 200 {
		return false
	}
	quoted := false
	for _, r := range t {
		switch {
		case r == '"':
			quoted = !quoted
		case quoted && r != 0:
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == ' ', r == '.', r == ',', r == '(', r == ')':
		default:
			return false
		}
	}
	return !quoted
}

// FormatKey names a row by its key in errors: the integer key, or a typed key's text (a
// composite key's columns in parentheses).
func FormatKey(key int64, text []string) string {
	switch len(text) {
	case 0:
		return strconv.FormatInt(key, 10)
	case 1:
		return strconv.Quote(text[0])
	}
	q := make([]string, len(text))
	for i, t := range text {
		q[i] = strconv.Quote(t)
	}
	return "(" + strings.Join(q, ", ") + ")"
}

// RowKeyText is row r's text of a typed key (nil for an integer key, or when text does not
// hold the row).
func RowKeyText(text [][]string, r int) []string {
	var out []string
	for _, t := range text {
		if r >= len(t) {
			return nil
		}
		out = append(out, t[r])
	}
	return out
}

// KeyList is the key's columns as a row constructor's list: "a", "b".
func KeyList(cols []KeyColumn) string {
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = pgx.Identifier{c.Name}.Sanitize()
	}
	return strings.Join(names, ", ")
}

// KeyOrderSQL is the ORDER BY list of the key, each column qualified by rel (a quoted
// relation or alias): a bare name would sort by the output column of that name, which for
// a key is its text.
func KeyOrderSQL(cols []KeyColumn, rel string) string {
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = rel + "." + pgx.Identifier{c.Name}.Sanitize()
	}
	return strings.Join(names, ", ")
}

// KeysAfterSQL is the condition "the key is after the key whose text is in parameters
// $n.. $n+len(cols)-1", a row comparison in the key's own types and collations, which the
// key's btree index answers. It returns the condition and the next free parameter number.
func KeysAfterSQL(cols []KeyColumn, n int) (string, int) {
	return keyCompareSQL(cols, ">", n)
}

// KeysThroughSQL is the condition "the key is at most the key in $n..".
func KeysThroughSQL(cols []KeyColumn, n int) (string, int) {
	return keyCompareSQL(cols, "<=", n)
}

// KeysAfterTextSQL is KeysAfterSQL with the key's text in the SQL text expressions texts,
// one per column (a setting a COPY reads, since COPY takes no parameters).
func KeysAfterTextSQL(cols []KeyColumn, texts []string) string {
	return keyCompare(cols, ">", texts)
}

func keyCompareSQL(cols []KeyColumn, op string, n int) (string, int) {
	params := make([]string, len(cols))
	for i := range cols {
		params[i] = "$" + strconv.Itoa(n+i)
	}
	return keyCompare(cols, op, params), n + len(cols)
}

func keyCompare(cols []KeyColumn, op string, texts []string) string {
	vals := make([]string, len(cols))
	for i, c := range cols {
		vals[i] = c.CastSQL(texts[i])
	}
	return "(" + KeyList(cols) + ") " + op + " (" + strings.Join(vals, ", ") + ")"
}

// KeyHash is the key's 64-bit hash for the exactly-once checksum: the first 8 bytes, big
// endian, of the MD5 of the key's text columns each written as its byte length, ':' and its
// bytes. KeyHashSQL computes the same in PostgreSQL.
func KeyHash(text []string) int64 {
	h := md5.New()
	var buf []byte
	for _, t := range text {
		buf = strconv.AppendInt(buf[:0], int64(len(t)), 10)
		buf = append(buf, ':')
		h.Write(buf)
		h.Write([]byte(t))
	}
	var sum [md5.Size]byte
	return int64(binary.BigEndian.Uint64(h.Sum(sum[:0])))
}

// KeyHashSQL is KeyHash in SQL, as a bigint.
func KeyHashSQL(cols []KeyColumn) string {
	parts := make([]string, len(cols))
	for i, c := range cols {
		t := c.TextSQL()
		parts[i] = "octet_length(" + t + ")::text || ':' || " + t
	}
	return "('x' || left(md5(" + strings.Join(parts, " || ") + "), 16))::bit(64)::int8"
}
