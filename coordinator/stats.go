package coordinator

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	"github.com/jackc/pgx/v5"

	"pgtrain/messages"
)

// statColumn is a feature or the label, with what its statistics need.
type statColumn struct {
	col    column
	field  string // the spec field errors name: features[i] or label
	label  bool
	cat    bool // categorical: counted and its text width measured in SQL
	median bool
}

// colStats is what planning learns about one column.
type colStats struct {
	stats     messages.Stats
	avgText   float64
	nonFinite bool
}

func statColumns(in *planInput) []statColumn {
	cols := make([]statColumn, 0, len(in.features)+1)
	for i, col := range in.features {
		f := in.spec.Features[i]
		cols = append(cols, statColumn{col: col, field: fmt.Sprintf("features[%d]", i),
			cat: f.Encode == messages.EncodeOneHot, median: f.Impute == messages.ImputeMedian})
	}
	return append(cols, statColumn{col: in.label, field: "label", label: true, cat: in.spec.Label.Encode != messages.EncodeNone})
}

// computeStats fills the column plans of the features and the label, splits the key space
// and counts the rows and key checksums of each range. One aggregate query counts the rows
// and computes what needs SQL (text widths, medians: sqlStats); the moments of the numeric
// columns and the checksums come from one binary COPY read in Go (scanMoments). It returns
// the average text width per categorical column (by name) for page sizing, the ranges and
// their checksums.
func computeStats(ctx context.Context, tx pgx.Tx, in *planInput, p *messages.Plan) (map[string]float64, []messages.KeyRange, []messages.KeyChecksum, error) {
	cols := statColumns(in)
	out := make([]colStats, len(cols))
	rows, err := sqlStats(ctx, tx, in, cols, out)
	if err != nil {
		return nil, nil, nil, err
	}
	if rows == 0 {
		return nil, nil, nil, &messages.FieldError{Field: "table", Reason: fmt.Sprintf("%s.%s has no rows", in.rel.schema, in.rel.name)}
	}
	bounds, err := splitKeys(ctx, tx, in, rows)
	if err != nil {
		return nil, nil, nil, err
	}
	d, err := scanMoments(ctx, tx, in, cols, out, bounds)
	if err != nil {
		return nil, nil, nil, err
	}
	if d.nullKeys > 0 {
		return nil, nil, nil, &messages.FieldError{Field: "key", Reason: fmt.Sprintf("%d rows have a NULL key %q and could never be read", d.nullKeys, in.key.name)}
	}
	avgText, err := columnPlans(in, p, cols, out, d.rows)
	return avgText, bounds, d.sums, err
}

// scanMoments reads the key and the numeric columns once with a binary COPY and sums every
// value and its square exactly, so mean and standard deviation are the same bits whatever
// order the rows come in (a float aggregate in SQL is not: parallel workers and the
// physical order change its rounding; numeric is exact but five times slower than a COPY).
// The same pass sums the keys of each range, modulo 2^64 like the trainer.
func scanMoments(ctx context.Context, tx pgx.Tx, in *planInput, cols []statColumn, out []colStats, bounds []messages.KeyRange) (*copyMoments, error) {
	items := []string{pgx.Identifier{in.key.name}.Sanitize() + "::int8"}
	var idx []int
	for i, c := range cols {
		if c.cat {
			continue
		}
		// float4 travels as itself (half the bytes); everything else as float8, the type
		// the statistics are in.
		cast := "::float8"
		if c.col.base == "float4" {
			cast = "::float4"
		}
		items = append(items, pgx.Identifier{c.col.name}.Sanitize()+cast)
		idx = append(idx, i)
	}
	d := &copyMoments{sums: make([]messages.KeyChecksum, len(bounds))}
	for _, b := range bounds[1:] {
		d.lows = append(d.lows, b.Lo)
	}
	for _, i := range idx {
		d.moments = append(d.moments, newMoments())
		d.names = append(d.names, cols[i].col.name)
	}
	sql := "copy (select " + strings.Join(items, ", ") + " from " + in.rel.ident() + ") to stdout (format binary)"
	if _, err := tx.Conn().PgConn().CopyTo(ctx, d, sql); err != nil {
		return nil, fmt.Errorf("computing statistics: %w", err)
	}
	if !d.done {
		return nil, fmt.Errorf("computing statistics: the COPY stream ended without its trailer")
	}
	for j, i := range idx {
		m, s := d.moments[j], &out[i].stats
		s.Count = m.count
		s.Mean, s.StdDev = m.meanStdDev()
		s.Min, s.Max = m.min, m.max
		out[i].nonFinite = m.nonFinite
	}
	return d, nil
}

// sqlStats runs one aggregate query for the row count, the count and the mean text width
// of each categorical column and the median of each numeric feature imputed by it.
func sqlStats(ctx context.Context, tx pgx.Tx, in *planInput, cols []statColumn, out []colStats) (rows int64, err error) {
	items := []string{"count(*)"}
	targets := []any{&rows}
	for i, c := range cols {
		q := pgx.Identifier{c.col.name}.Sanitize()
		s := &out[i]
		switch {
		case c.cat:
			items = append(items, fmt.Sprintf("count(%s)", q), fmt.Sprintf("coalesce(avg(octet_length(%s::text)), 0)::float8", q))
			targets = append(targets, &s.stats.Count, &s.avgText)
		case c.median:
			items = append(items, fmt.Sprintf("coalesce(percentile_cont(0.5) within group (order by %s::float8), 0)", q))
			targets = append(targets, &s.stats.Median)
		}
	}
	sql := "select " + strings.Join(items, ", ") + " from " + in.rel.ident()
	if err := tx.QueryRow(ctx, sql).Scan(targets...); err != nil {
		return 0, fmt.Errorf("computing statistics: %w", err)
	}
	return rows, nil
}

// columnPlans turns the statistics into the plans of the features and the label, checking
// what the data must satisfy.
func columnPlans(in *planInput, p *messages.Plan, cols []statColumn, out []colStats, rows int64) (map[string]float64, error) {
	avgText := map[string]float64{}
	for i, c := range cols {
		s := out[i].stats
		s.Nulls = rows - s.Count
		cp := messages.ColumnPlan{Name: c.col.name, PGType: c.col.pgType, Kind: messages.KindNumeric, Factor: 1, Stats: s}
		if c.cat {
			cp.Kind = messages.KindCategorical
			avgText[c.col.name] = out[i].avgText
		} else if out[i].nonFinite || math.IsNaN(s.Median) || math.IsInf(s.Median, 0) {
			field := c.field + ".column"
			if c.label {
				field = "label"
			}
			return nil, &messages.FieldError{Field: field, Reason: fmt.Sprintf("column %q holds NaN or infinite values", c.col.name)}
		}
		if c.label {
			if s.Nulls > 0 {
				return nil, &messages.FieldError{Field: "label", Reason: fmt.Sprintf("%d rows have a NULL label %q", s.Nulls, c.col.name)}
			}
			p.Label = cp
			continue
		}
		if !c.cat {
			if err := numericTransform(in.spec.Features[i], c.field, &cp); err != nil {
				return nil, err
			}
		}
		p.Features = append(p.Features, cp)
	}
	return avgText, nil
}

// copySignature opens every binary COPY stream.
var copySignature = []byte("PGCOPY\n\xff\r\n\x00")

// copyMoments decodes a binary COPY of the key (int8) and numeric columns (each float4 or
// float8) into moments and per-range key checksums. pgconn hands it one Write per CopyData
// message; a row split across two is kept until its end arrives.
type copyMoments struct {
	moments []*moments
	names   []string // of the columns, for errors
	// lows are the lower bounds of the ranges after the first; sums the ranges' checksums.
	lows           []int64
	sums           []messages.KeyChecksum
	rows, nullKeys int64
	pending        []byte
	header         bool
	done           bool
}

func (d *copyMoments) Write(p []byte) (int, error) {
	n := len(p)
	buffered := len(d.pending) > 0
	if buffered {
		d.pending = append(d.pending, p...)
		p = d.pending
	}
	used, err := d.decode(p)
	if err != nil {
		return 0, fmt.Errorf("decoding the statistics COPY: %w", err)
	}
	if buffered {
		d.pending = d.pending[:copy(d.pending, p[used:])]
	} else {
		d.pending = append(d.pending, p[used:]...)
	}
	return n, nil
}

// decode consumes the header and whole rows of p and returns how many bytes it used.
func (d *copyMoments) decode(p []byte) (int, error) {
	off := 0
	if !d.header {
		const fixed = 19 // signature, flags, extension length
		if len(p) < fixed {
			return 0, nil
		}
		if !bytes.Equal(p[:len(copySignature)], copySignature) {
			return 0, fmt.Errorf("no binary COPY signature")
		}
		ext := int(binary.BigEndian.Uint32(p[15:fixed]))
		if len(p) < fixed+ext {
			return 0, nil
		}
		off, d.header = fixed+ext, true
	}
	fields := 1 + len(d.moments)
	for !d.done {
		if len(p)-off < 2 {
			return off, nil
		}
		nf := int16(binary.BigEndian.Uint16(p[off:]))
		if nf == -1 {
			d.done = true
			return len(p), nil
		}
		if int(nf) != fields {
			return 0, fmt.Errorf("a row of %d fields, want %d", nf, fields)
		}
		// The whole row first, so a partial one is left for the next write.
		end := off + 2
		for range fields {
			if len(p)-end < 4 {
				return off, nil
			}
			end += 4 + max(int(int32(binary.BigEndian.Uint32(p[end:]))), 0)
			if end > len(p) {
				return off, nil
			}
		}
		q := off + 2
		d.rows++
		switch l := int32(binary.BigEndian.Uint32(p[q:])); l {
		case -1:
			d.nullKeys++
		case 8:
			k := int64(binary.BigEndian.Uint64(p[q+4:]))
			d.sums[d.rangeOf(k)].Add(k)
		default:
			return 0, fmt.Errorf("the key: a value of %d bytes, want 8", l)
		}
		q += 4 + max(int(int32(binary.BigEndian.Uint32(p[q:]))), 0)
		for j, m := range d.moments {
			l := int32(binary.BigEndian.Uint32(p[q:]))
			q += 4
			switch l {
			case -1:
			case 4:
				m.add(float64(math.Float32frombits(binary.BigEndian.Uint32(p[q:]))))
			case 8:
				m.add(math.Float64frombits(binary.BigEndian.Uint64(p[q:])))
			default:
				return 0, fmt.Errorf("column %q: a value of %d bytes, want 4 or 8", d.names[j], l)
			}
			q += max(int(l), 0)
		}
		off = q
	}
	return len(p), nil
}

// rangeOf is the index of the range holding k: the number of lower bounds at or below it.
func (d *copyMoments) rangeOf(k int64) int {
	lo, hi := 0, len(d.lows)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if d.lows[mid] <= k {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}
