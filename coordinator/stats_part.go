package coordinator

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"pgtrain/internal/pgbinary"
	"pgtrain/messages"
)

// maxVocabBytes bounds the bytes of the distinct values a vocabulary count keeps per
// column; past it (or past the distinct-value limit) the vocabulary is counted in SQL.
const maxVocabBytes = 16 << 20

// statsPart is what one binary COPY of a part of the table gives: the row count and, per
// planned column (in statColumns order), the exact moments of a numeric column or the
// counts of a categorical one.
type statsPart struct {
	rows    int64
	moments []*moments
	f32     []*moments32 // the float4 columns' way into moments, folded at the end
	text    []*textStats
	// decode reads a value of a boolean, date, timestamp or array column into moments (or,
	// for an array, into elems, one per element; badLen is set on a value of another length).
	decode []func(v []byte) error
	elems  [][]*moments
	badLen []bool
	// keys counts an integer key into buckets, from which the ranges are cut (nil for a
	// typed key, which has its own pass).
	keys *keyHistogram
}

// textStats counts the non-NULL values of a categorical column, their bytes and, for a
// one-hot feature, each distinct value, up to a limit.
type textStats struct {
	count, bytes int64
	// vocab counts each value while it holds at most limit values (and maxVocabBytes);
	// over is set, and vocab dropped, past that.
	vocab      map[string]*int64
	limit      int
	vocabBytes int
	over       bool
}

func (t *textStats) see(v []byte) {
	t.count++
	t.bytes += int64(len(v))
	if t.vocab == nil {
		return
	}
	if n, ok := t.vocab[string(v)]; ok {
		*n++
		return
	}
	t.addValue(string(v), 1)
}

func (t *textStats) addValue(v string, n int64) {
	if len(t.vocab) >= t.limit || t.vocabBytes+len(v) > maxVocabBytes {
		t.vocab, t.over = nil, true
		return
	}
	t.vocab[v] = &n
	t.vocabBytes += len(v)
}

func (t *textStats) merge(o *textStats) {
	t.count += o.count
	t.bytes += o.bytes
	if o.over {
		t.vocab, t.over = nil, true
	}
	for v, n := range o.vocab {
		if t.vocab == nil {
			break
		}
		if m, ok := t.vocab[v]; ok {
			*m += *n
		} else {
			t.addValue(v, *n)
		}
	}
}

// top is the k most frequent values, ties in byte order (as SQL's collate "C").
func (t *textStats) top(k int) []string {
	vals := make([]string, 0, len(t.vocab))
	for v := range t.vocab {
		vals = append(vals, v)
	}
	slices.SortFunc(vals, func(a, b string) int {
		if na, nb := *t.vocab[a], *t.vocab[b]; na != nb {
			return cmp.Compare(nb, na)
		}
		return strings.Compare(a, b)
	})
	return vals[:min(k, len(vals))]
}

func (s *statsPart) merge(o *statsPart) {
	s.rows += o.rows
	if s.keys != nil {
		s.keys.merge(o.keys)
	}
	for i, m := range s.moments {
		if m != nil {
			m.merge(o.moments[i])
		}
	}
	for i, t := range s.text {
		if t != nil {
			t.merge(o.text[i])
		}
	}
	for i, e := range s.elems {
		for j, m := range e {
			m.merge(o.elems[i][j])
		}
		s.badLen[i] = s.badLen[i] || o.badLen[i]
	}
}

// decoder is how scanStats reads a value of column i of a boolean, date, timestamp or
// array type: through pgbinary, as the fetchers do, so both see the same numbers.
func (s *statsPart) decoder(i int, c statColumn) func(v []byte) error {
	m := s.moments[i]
	switch c.typ {
	case messages.TypeBoolean:
		return func(v []byte) error {
			x, err := pgbinary.Bool(v)
			m.add(float64(x))
			return err
		}
	case messages.TypeDate:
		return func(v []byte) error {
			x, err := pgbinary.DateSeconds(v)
			m.add(x)
			return err
		}
	case messages.TypeTimestamp, messages.TypeTimestampTZ:
		return func(v []byte) error {
			x, err := pgbinary.TimestampSeconds(v)
			m.add(x)
			return err
		}
	}
	oid := uint32(pgbinary.Float4OID)
	if c.typ == messages.TypeFloat8Array {
		oid = pgbinary.Float8OID
	}
	elems := make([]*moments, c.elems)
	for j := range elems {
		elems[j] = newMoments()
	}
	s.elems[i] = elems
	add := func(j int, e []byte) {
		if e != nil {
			elems[j].add(pgbinary.Float(e))
		}
	}
	return func(v []byte) error {
		err := pgbinary.Array(v, oid, len(elems), add)
		var le *pgbinary.LengthError
		if errors.As(err, &le) {
			s.badLen[i] = true // named by key once the pass is over
			return nil
		}
		return err
	}
}

// scanStats reads the planned columns of one part of the relation (where is its WHERE
// clause, "" for all) with a binary COPY and sums every numeric value and its square
// exactly, so mean and standard deviation are the same bits whatever order the rows come
// in and however the parts are cut (a float aggregate in SQL is not: parallel workers and
// the physical order change its rounding; numeric is exact but five times slower than a
// COPY). Categorical columns come as text and are counted, with their vocabulary. With a
// span (an integer key), the key comes last and is counted into the key histogram.
func scanStats(ctx context.Context, tx pgx.Tx, in *planInput, cols []statColumn, where string, vocabLimit int, span *keySpan) (*statsPart, error) {
	s := &statsPart{moments: make([]*moments, len(cols)), f32: make([]*moments32, len(cols)), text: make([]*textStats, len(cols)),
		decode: make([]func([]byte) error, len(cols)), elems: make([][]*moments, len(cols)), badLen: make([]bool, len(cols))}
	items := make([]string, len(cols))
	for i, c := range cols {
		q := pgx.Identifier{c.col.name}.Sanitize()
		switch {
		case c.cat:
			items[i] = q + "::text"
			s.text[i] = &textStats{}
			if c.vocab > 0 {
				s.text[i].vocab, s.text[i].limit = map[string]*int64{}, max(vocabLimit, c.vocab)
			}
		case c.typ != messages.TypeNumber:
			items[i] = q + "::" + c.baseType()
			if !c.isArray() {
				s.moments[i] = newMoments()
			}
			s.decode[i] = s.decoder(i, c)
		case c.col.base == "float4":
			// float4 travels as itself (half the bytes); everything else as float8, the type
			// the statistics are in.
			items[i] = q + "::float4"
			s.moments[i] = newMoments()
			s.f32[i] = &moments32{m: s.moments[i]}
		default:
			items[i] = q + "::float8"
			s.moments[i] = newMoments()
		}
	}
	fields := len(cols)
	if span != nil {
		s.keys = newKeyHistogram(*span)
		items = append(items, pgx.Identifier{in.key.name}.Sanitize()+"::int8")
		fields++
	}
	r := newCopyReader(fields, func(f [][]byte) error {
		s.rows++
		if s.keys != nil {
			if err := s.keys.add(f[len(cols)]); err != nil {
				return err
			}
			f = f[:len(cols)]
		}
		for i, v := range f {
			if v == nil {
				continue
			}
			if d := s.decode[i]; d != nil {
				if err := d(v); err != nil {
					return fmt.Errorf("column %q: %w", cols[i].col.name, err)
				}
				continue
			}
			if m := s.moments[i]; m != nil {
				switch {
				case len(v) == 4 && s.f32[i] != nil:
					s.f32[i].add(binary.BigEndian.Uint32(v))
				case len(v) == 8:
					m.add(math.Float64frombits(binary.BigEndian.Uint64(v)))
				default:
					return fmt.Errorf("column %q: a value of %d bytes, want 4 or 8", cols[i].col.name, len(v))
				}
				continue
			}
			s.text[i].see(v)
		}
		return nil
	})
	sql := "copy (select " + strings.Join(items, ", ") + " from " + in.source() + where + ") to stdout (format binary)"
	if _, err := tx.Conn().PgConn().CopyTo(ctx, r, sql); err != nil {
		return nil, fmt.Errorf("computing statistics: %w", err)
	}
	if err := r.finish(); err != nil {
		return nil, fmt.Errorf("computing statistics: %w", err)
	}
	for _, a := range s.f32 {
		if a != nil {
			a.fold()
		}
	}
	return s, nil
}

// vocabulary is the top-K vocabulary of a one-hot feature: from the counts of the
// statistics pass, or, for a column with too many distinct values to count in memory,
// from SQL. Values are their text form (col::text), which is how fetchers read
// categorical columns; ties are broken by the value's bytes, so the vocabulary does not
// depend on the database's collation.
func vocabulary(ctx context.Context, tx pgx.Tx, in *planInput, c statColumn, t *textStats) ([]string, error) {
	if !t.over {
		return t.top(c.vocab), nil
	}
	q := pgx.Identifier{c.col.name}.Sanitize()
	sql := fmt.Sprintf(`select v from (select %s::text as v, count(*) as n from %s where %s is not null group by 1) s
order by n desc, v collate "C" limit $1`, q, in.source(), q)
	vocab, err := queryStrings(ctx, tx, sql, c.vocab)
	if err != nil {
		return nil, fmt.Errorf("computing the vocabulary of %q: %w", c.col.name, err)
	}
	return vocab, nil
}
