package fetcher

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/internal/pgbinary"
	"pgtrain/messages"
)

// ErrRowTooLarge is returned when a single row does not fit in one message.
var ErrRowTooLarge = errors.New("one row is larger than the bus's max payload")

// ErrBadPlan is returned for a plan the fetcher cannot read with.
var ErrBadPlan = errors.New("invalid plan for fetching")

// ErrBadValue is returned for a row the plan cannot read: an array of another length than
// the planned one, say. The error names the row's key.
var ErrBadValue = errors.New("a value the plan cannot read")

// Page is one keyset page of a range, encoded for RAW.
type Page struct {
	Batch *messages.RawBatch
	// Data is the encoded batch, at most the reader's max bytes.
	Data []byte
	// LastKey is the key the next page starts after (the previous one for an empty page);
	// LastKeyText is that key's text for a typed key.
	LastKey     int64
	LastKeyText []string
	// WireBytes is what PostgreSQL sent for the page's rows (the look-ahead row included).
	WireBytes int64
}

type readCol struct {
	name string
	kind uint8 // messages.ColumnFloat64, ColumnFloat32 or ColumnText
	// out is the column's first raw column; an array of elems elements fills elems of them.
	out, elems int
}

// wire is the type a column arrives in from PostgreSQL.
type wire uint8

const (
	wireFloat8 wire = iota // double precision, or any numeric type cast to it
	wireFloat4
	wireInt2
	wireInt4
	wireInt8
	wireText
	wireBool
	wireDate
	wireTimestamp // timestamp and timestamptz: the same binary form
	wireFloat4Array
	wireFloat8Array
)

// typedWires are the wire types of the column types that are not plain numbers
// (ColumnPlan.Type), and the type each is selected as (so a domain arrives as its base).
var typedWires = map[string]struct {
	wire wire
	cast string
}{
	messages.TypeBoolean:     {wireBool, "bool"},
	messages.TypeDate:        {wireDate, "date"},
	messages.TypeTimestamp:   {wireTimestamp, "timestamp"},
	messages.TypeTimestampTZ: {wireTimestamp, "timestamptz"},
	messages.TypeFloat4Array: {wireFloat4Array, "float4[]"},
	messages.TypeFloat8Array: {wireFloat8Array, "float8[]"},
}

// nativeNumbers are the numeric types (as format_type names them in ColumnPlan.PGType) that
// are selected as stored and converted here: a cast to float8 costs PostgreSQL a function
// call per value (about a quarter more server time to read a table of reals) and, for real
// and the smaller integers, more bytes to send. The conversions are the cast's own: exact
// for all but bigint, which rounds to the nearest float64 as int8::float8 does. numeric (and
// a domain, which goes by its own name) is still cast: its binary form is decimal digits.
var nativeNumbers = map[string]wire{
	"double precision": wireFloat8,
	"real":             wireFloat4,
	"smallint":         wireInt2,
	"integer":          wireInt4,
	"bigint":           wireInt8,
}

// wireOf is the wire type of a result column of type oid.
func wireOf(oid uint32) (wire, bool) {
	switch oid {
	case pgtype.Float8OID:
		return wireFloat8, true
	case pgtype.Float4OID:
		return wireFloat4, true
	case pgtype.Int2OID:
		return wireInt2, true
	case pgtype.Int4OID:
		return wireInt4, true
	case pgtype.Int8OID:
		return wireInt8, true
	case pgtype.TextOID:
		return wireText, true
	case pgtype.BoolOID:
		return wireBool, true
	case pgtype.DateOID:
		return wireDate, true
	case pgtype.TimestampOID, pgtype.TimestamptzOID:
		return wireTimestamp, true
	case pgtype.Float4ArrayOID:
		return wireFloat4Array, true
	case pgtype.Float8ArrayOID:
		return wireFloat8Array, true
	}
	return 0, false
}

// carries reports whether a raw column of kind holds every value of w exactly.
func carries(kind uint8, w wire) bool {
	switch kind {
	case messages.ColumnFloat64:
		return w != wireText && w != wireFloat4Array
	case messages.ColumnFloat32:
		return w == wireFloat4 || w == wireInt2 || w == wireBool || w == wireFloat4Array
	}
	return w == wireText
}

func (w wire) String() string {
	return [...]string{"float8", "float4", "int2", "int4", "int8", "text", "bool", "date", "timestamp", "float4[]", "float8[]"}[w]
}

// RangeReader reads the pages of one job's ranges. It is safe for concurrent use.
type RangeReader struct {
	pool  *pgxpool.Pool
	jobID string
	first string // key >= lo: the first page
	next  string // key > last: every later page
	// keyCols is a typed key's columns; sel and from start its queries, which ReadPage
	// ends with the bounds of the page.
	keyCols   []messages.KeyColumn
	sel, from string
	table     string // the quoted relation, which qualifies the ORDER BY
	// where is the plan's filters as bound parameters; whereArgs their values, which the
	// parameters after the page's own take.
	where     []messages.PlannedFilter
	whereArgs []any
	whereArg  []int // the index in whereArgs of each filter's values (is_null has none)
	cols      []readCol
	pageRows  int
	snapshot  string
	maxBytes  int
	// inputDim and labelDim size the READY batch the page becomes; a page must fit there too.
	inputDim, labelDim int
	// readyKeyText is set for a prediction job with a typed key, whose READY batches carry
	// the key's text too.
	readyKeyText bool
	// rawCols is how many raw columns a page has: one per column, one per array element.
	rawCols int
}

// NewRangeReader prepares the statements for plan. maxBytes bounds an encoded page (and the
// READY batch it becomes); every fetcher of a job must use the same value to produce the
// same pages, which holds when they share one NATS cluster.
func NewRangeReader(pool *pgxpool.Pool, plan *messages.Plan, maxBytes int) (*RangeReader, error) {
	if plan.PageRows < 1 {
		return nil, fmt.Errorf("job %s: page_rows is %d: %w", plan.JobID, plan.PageRows, ErrBadPlan)
	}
	if plan.Table == "" || plan.Key == "" {
		return nil, fmt.Errorf("job %s: no table or key column: %w", plan.JobID, ErrBadPlan)
	}
	if err := validSnapshotID(plan.Snapshot); err != nil {
		return nil, fmt.Errorf("job %s: %w", plan.JobID, err)
	}
	// A page holds at most the rows whose READY batch fits in maxBytes: reading (and
	// allocating for) more would only be thrown away, and the plan's page size is not
	// trusted with memory.
	fit := 1 // a row wider than maxBytes fails as ErrRowTooLarge when read
	// The sample weight travels beside the label: it counts in the label's width here.
	labelDim := plan.LabelDim + plan.WeightDim()
	if plan.InputDim >= 0 && plan.LabelDim >= 0 && plan.InputDim <= maxBytes && plan.LabelDim <= maxBytes {
		fit = (maxBytes - messages.ReadyBatchBytes(plan.JobID, 0, plan.InputDim, labelDim)) /
			messages.ReadyRowBytes(plan.InputDim, labelDim)
	}
	r := &RangeReader{
		pool:     pool,
		jobID:    plan.JobID,
		pageRows: max(min(plan.PageRows, fit), 1),
		snapshot: plan.Snapshot,
		maxBytes: maxBytes,
		inputDim: plan.InputDim,
		labelDim: labelDim,
	}
	key := pgx.Identifier{plan.Key}.Sanitize()
	sel := "SELECT " + key + "::int8"
	if plan.KeyColumns != nil {
		if len(plan.KeyColumns) > messages.MaxKeyColumns {
			return nil, fmt.Errorf("job %s: a key of %d columns: %w", plan.JobID, len(plan.KeyColumns), ErrBadPlan)
		}
		texts := make([]string, len(plan.KeyColumns))
		for i, c := range plan.KeyColumns {
			if !messages.ValidKeyType(c.Type) {
				return nil, fmt.Errorf("job %s: key column %q has type %q: %w", plan.JobID, c.Name, c.Type, ErrBadPlan)
			}
			texts[i] = c.TextSQL()
		}
		r.keyCols = plan.KeyColumns
		r.readyKeyText = plan.Kind == messages.JobKindPrediction
		sel = "SELECT " + strings.Join(texts, ", ")
	}
	raw := 0 // raw columns so far
	add := func(c messages.ColumnPlan) error {
		rc := readCol{name: c.Name, kind: c.RawKind(), out: raw, elems: len(c.Elements)}
		raw += max(rc.elems, 1)
		col := pgx.Identifier{c.Name}.Sanitize()
		switch c.Kind {
		case messages.KindNumeric:
			w, native := nativeNumbers[c.PGType]
			switch tw, typed := typedWires[c.Type]; {
			case typed:
				// Read as stored and converted here, by the decoder the planner's statistics use.
				w = tw.wire
				sel += ", " + col + "::" + tw.cast
				if (w == wireFloat4Array || w == wireFloat8Array) != (rc.elems > 0) {
					return fmt.Errorf("job %s: column %q of type %q with %d elements: %w", plan.JobID, c.Name, c.Type, rc.elems, ErrBadPlan)
				}
			case c.Type != messages.TypeNumber:
				return fmt.Errorf("job %s: column %q has unknown type %q: %w", plan.JobID, c.Name, c.Type, ErrBadPlan)
			case native:
				sel += ", " + col
			default:
				w = wireFloat8
				sel += ", " + col + "::float8"
			}
			if !carries(rc.kind, w) {
				return fmt.Errorf("job %s: column %q of type %q would travel as float32, which does not hold every %s: %w",
					plan.JobID, c.Name, c.PGType, w, ErrBadPlan)
			}
		case messages.KindCategorical:
			sel += ", " + col + "::text"
		default:
			return fmt.Errorf("job %s: column %q has unknown kind %q: %w", plan.JobID, c.Name, c.Kind, ErrBadPlan)
		}
		r.cols = append(r.cols, rc)
		r.rawCols = raw
		return nil
	}
	for _, c := range plan.Features {
		if err := add(c); err != nil {
			return nil, err
		}
	}
	if plan.HasLabel() {
		if err := add(plan.Label); err != nil {
			return nil, err
		}
	}
	if plan.WeightDim() > 0 {
		if err := add(*plan.SampleWeight); err != nil {
			return nil, err
		}
	}
	table := pgx.Identifier{plan.Table}
	if plan.Schema != "" {
		table = pgx.Identifier{plan.Schema, plan.Table}
	}
	// The key is compared uncast (so its index is used) against int8 parameters (so an int4
	// key still takes the full int64 bounds of the first and last ranges).
	r.where = plan.Where
	for _, f := range plan.Where {
		r.whereArg = append(r.whereArg, len(r.whereArgs))
		if f.Values != nil {
			r.whereArgs = append(r.whereArgs, f.WhereArg())
		}
	}
	filter, err := r.whereSQL(4)
	if err != nil {
		return nil, fmt.Errorf("job %s: %w: %w", plan.JobID, err, ErrBadPlan)
	}
	from := " FROM " + table.Sanitize() + " WHERE " + key
	tail := " AND " + key + " <= $2::int8" + filter + " ORDER BY " + key + " LIMIT $3"
	r.first = sel + from + " >= $1::int8" + tail
	r.next = sel + from + " > $1::int8" + tail
	r.sel, r.from, r.table = sel, " FROM "+table.Sanitize(), table.Sanitize()
	return r, nil
}

// validSnapshotID accepts what pg_export_snapshot returns (hex digits and dashes); the id is
// spliced into SET TRANSACTION SNAPSHOT, which takes no parameters.
func validSnapshotID(id string) error {
	if len(id) > 64 {
		return fmt.Errorf("snapshot id of %d characters: %w", len(id), ErrBadPlan)
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F' || c >= 'a' && c <= 'f' || c == '-') {
			return fmt.Errorf("snapshot id %q: only hex digits and '-' are allowed: %w", id, ErrBadPlan)
		}
	}
	return nil
}

// ReadPage reads page `page` of range rng in read pass `pass`: the next (at most PageRows)
// rows after lastKey, or from rng.Lo for page 0. When the encoded page is larger than the
// max bytes it keeps the first half of its rows until it fits, so the page boundaries depend
// only on the data and the plan.
//
// A typed key resumes after lastText (page 0: after rng.After) instead of lastKey.
func (r *RangeReader) ReadPage(ctx context.Context, pass int, rng messages.KeyRange, page int, lastKey int64, lastText []string) (*Page, error) {
	sql, from := r.next, lastKey
	if page == 0 {
		sql, from = r.first, rng.Lo
	}
	args := append([]any{from, rng.Hi, r.pageRows + 1}, r.whereArgs...)
	if r.keyCols != nil {
		after := lastText
		if page == 0 {
			after = rng.After
		}
		var err error
		if sql, args, err = r.typedPageSQL(after, rng.Through); err != nil {
			return nil, fmt.Errorf("batch %s: %w", messages.BatchID{JobID: r.jobID, Pass: pass, Range: rng.Index, Page: page}, err)
		}
	}
	b := &messages.RawBatch{BatchID: messages.BatchID{JobID: r.jobID, Pass: pass, Range: rng.Index, Page: page}}
	// One row more than a page says whether the range goes on after it.
	wireBytes, err := r.query(ctx, sql, args, b)
	if err != nil {
		return nil, err
	}
	b.Last = true
	if len(b.Keys) > r.pageRows {
		truncate(b, r.pageRows)
		b.Last = false
	}
	for {
		data, err := messages.EncodeRaw(b)
		if err != nil {
			return nil, fmt.Errorf("encoding batch %s: %w", b.BatchID, err)
		}
		n := len(b.Keys)
		ready := messages.ReadyBatchBytes(r.jobID, n, r.inputDim, r.labelDim)
		if r.readyKeyText {
			ready += messages.KeyTextBytes(b.KeyText)
		}
		if len(data) <= r.maxBytes && ready <= r.maxBytes {
			p := &Page{Batch: b, Data: data, LastKey: lastKey, LastKeyText: lastText, WireBytes: wireBytes}
			if n > 0 {
				p.LastKey = b.Keys[n-1]
				if b.KeyText != nil {
					p.LastKeyText = messages.RowKeyText(b.KeyText, n-1)
				}
			}
			return p, nil
		}
		if n <= 1 {
			return nil, fmt.Errorf("batch %s: row key %s encodes to %d bytes (READY row %d bytes), over %d: %w",
				b.BatchID, messages.FormatKey(b.Keys[0], messages.RowKeyText(b.KeyText, 0)), len(data), ready, r.maxBytes, ErrRowTooLarge)
		}
		truncate(b, n/2)
		b.Last = false
	}
}

// whereSQL is " AND " and the plan's filters on parameters $n.., or "" without filters.
func (r *RangeReader) whereSQL(n int) (string, error) {
	if len(r.where) == 0 {
		return "", nil
	}
	cond, err := messages.WhereSQL(r.where, r.whereRef(n))
	return " AND " + cond, err
}

// whereRef is the parameter holding filter i's values when whereArgs start at $n.
func (r *RangeReader) whereRef(n int) func(int) string {
	return func(i int) string { return "$" + strconv.Itoa(n+r.whereArg[i]) + "::text" }
}

// typedPageSQL is the page query of a typed key: the keys after `after` (nil: from the
// first) through `through` (nil: to the last), in key order.
func (r *RangeReader) typedPageSQL(after, through []string) (string, []any, error) {
	var conds []string
	var args []any
	n := 1
	for _, bound := range [...]struct {
		key  []string
		cond func([]messages.KeyColumn, int) (string, int)
	}{{after, messages.KeysAfterSQL}, {through, messages.KeysThroughSQL}} {
		if bound.key == nil {
			continue
		}
		if len(bound.key) != len(r.keyCols) {
			return "", nil, fmt.Errorf("a key bound of %d columns for a key of %d: %w", len(bound.key), len(r.keyCols), ErrBadPlan)
		}
		var c string
		c, n = bound.cond(r.keyCols, n)
		conds = append(conds, c)
		for _, k := range bound.key {
			args = append(args, k)
		}
	}
	if len(r.where) > 0 {
		cond, err := messages.WhereSQL(r.where, r.whereRef(n))
		if err != nil {
			return "", nil, fmt.Errorf("%w: %w", err, ErrBadPlan)
		}
		conds = append(conds, cond)
		args = append(args, r.whereArgs...)
		n += len(r.whereArgs)
	}
	sql := r.sel + r.from
	if conds != nil {
		sql += " WHERE " + strings.Join(conds, " AND ")
	}
	sql += " ORDER BY " + messages.KeyOrderSQL(r.keyCols, r.table) + " LIMIT $" + strconv.Itoa(n)
	return sql, append(args, r.pageRows+1), nil
}

func (r *RangeReader) query(ctx context.Context, sql string, args []any, b *messages.RawBatch) (wireBytes int64, err error) {
	if r.snapshot == "" {
		rows, err := r.pool.Query(ctx, sql, args...)
		if err != nil {
			return 0, err
		}
		return r.decode(rows, b)
	}
	tx, err := r.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) // read only: nothing to commit
	if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+r.snapshot+"'"); err != nil {
		return 0, fmt.Errorf("joining snapshot %s: %w", r.snapshot, err)
	}
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return 0, err
	}
	return r.decode(rows, b)
}

// textCol collects a page's text values in one buffer, turned into one string at the end.
type textCol struct {
	buf  []byte
	ends []int
}

// decode reads the rows from their raw wire values: binary numbers are big-endian, text is
// its bytes. Text-format results (a simple-protocol pool) are parsed instead. A typed key
// arrives as its text columns, which go to b.KeyText, and is hashed into b.Keys.
func (r *RangeReader) decode(rows pgx.Rows, b *messages.RawBatch) (wireBytes int64, err error) {
	defer rows.Close()
	fds := rows.FieldDescriptions()
	nk := max(len(r.keyCols), 1)
	if len(fds) != nk+len(r.cols) {
		return 0, fmt.Errorf("query returned %d columns, want %d", len(fds), nk+len(r.cols))
	}
	capRows := r.pageRows + 1
	b.Keys = make([]int64, 0, capRows)
	if r.keyCols != nil {
		b.KeyText = make([][]string, nk)
		for i := range b.KeyText {
			b.KeyText[i] = make([]string, 0, capRows)
		}
	}
	b.Columns = make([]messages.RawColumn, r.rawCols)
	texts := make([]textCol, r.rawCols)
	// Number columns are filled by index into slices of the page's capacity and cut to the
	// rows read at the end, so the loop stores no slice header per value. All three are
	// indexed by raw column.
	f64 := make([][]float64, r.rawCols)
	f32 := make([][]float32, r.rawCols)
	// Values are decoded by the type they arrive in, which is the planned one unless the
	// column's type changed since planning: then whatever still converts exactly is read,
	// and anything else cannot be read with this plan.
	wires := make([]wire, len(r.cols))
	formats := make([]int16, len(r.cols))
	for i, c := range r.cols {
		w, ok := wireOf(fds[nk+i].DataTypeOID)
		if !ok || !carries(c.kind, w) || (w == wireFloat4Array || w == wireFloat8Array) != (c.elems > 0) {
			return 0, fmt.Errorf("column %q arrives with type oid %d, which a %s raw column cannot carry (its type changed since planning?): %w",
				c.name, fds[nk+i].DataTypeOID, kindName(c.kind), ErrBadPlan)
		}
		wires[i], formats[i] = w, fds[nk+i].Format
		if c.elems > 0 && formats[i] == pgx.TextFormatCode {
			return 0, fmt.Errorf("array column %q arrives as text (a simple-protocol connection): the fetcher reads arrays in binary only: %w", c.name, ErrBadPlan)
		}
		for j := range max(c.elems, 1) {
			name := c.name
			if c.elems > 0 {
				name = messages.RawName(c.name, j)
			}
			o := c.out + j
			b.Columns[o] = messages.RawColumn{Name: name, Kind: c.kind}
			switch c.kind {
			case messages.ColumnFloat64:
				f64[o] = make([]float64, capRows)
			case messages.ColumnFloat32:
				f32[o] = make([]float32, capRows)
			default:
				texts[o].ends = make([]int, 0, capRows)
			}
		}
	}
	row := 0
	for rows.Next() {
		vals := rows.RawValues()
		for _, v := range vals {
			wireBytes += int64(len(v))
		}
		var k int64
		var text []string // a typed key's
		if r.keyCols == nil {
			k, err = decodeInt8(vals[0], fds[0].Format)
			if err != nil || vals[0] == nil {
				return 0, fmt.Errorf("row %d: key: %v", row, errOr(err, "NULL key"))
			}
		} else {
			text = make([]string, nk)
			for i := range text {
				if vals[i] == nil || fds[i].DataTypeOID != pgtype.TextOID {
					return 0, fmt.Errorf("row %d: key column %q: NULL or not text (oid %d): %w", row, r.keyCols[i].Name, fds[i].DataTypeOID, ErrBadPlan)
				}
				text[i] = string(vals[i])
			}
			k = messages.KeyHash(text)
		}
		key := func() string { return messages.FormatKey(k, text) }
		if row == capRows {
			return 0, fmt.Errorf("row key %s: more rows than the page's limit of %d", key(), capRows)
		}
		b.Keys = append(b.Keys, k)
		for i, t := range text {
			b.KeyText[i] = append(b.KeyText[i], t)
		}
		// The per-value loop of every page: columns by pointer and the values after the key
		// as their own slice (an integer key's loop was twice as slow with a copy of each
		// column's description and an offset index).
		cvals := vals[nk:]
		for i := range r.cols {
			c := &r.cols[i]
			v := cvals[i]
			o := c.out
			if c.elems > 0 {
				if err := decodeArray(b.Columns[o:o+c.elems], f64[o:o+c.elems], f32[o:o+c.elems], row, v, wires[i]); err != nil {
					return 0, fmt.Errorf("row key %s: column %q: %w", key(), c.name, err)
				}
				continue
			}
			if v == nil {
				b.Columns[o].SetNull(row) // a number stays 0
			}
			switch c.kind {
			case messages.ColumnFloat64:
				if v != nil {
					if f64[o][row], err = decodeNumber(v, wires[i], formats[i]); err != nil {
						return 0, fmt.Errorf("row key %s: column %q: %w", key(), c.name, err)
					}
				}
			case messages.ColumnFloat32:
				switch {
				case v == nil:
				case wires[i] == wireFloat4 && formats[i] != pgx.TextFormatCode && len(v) == 4:
					f32[o][row] = math.Float32frombits(binary.BigEndian.Uint32(v)) // real, as stored
				default:
					if f32[o][row], err = decodeFloat32(v, wires[i], formats[i]); err != nil {
						return 0, fmt.Errorf("row key %s: column %q: %w", key(), c.name, err)
					}
				}
			default:
				t := &texts[o]
				t.buf = append(t.buf, v...)
				t.ends = append(t.ends, len(t.buf))
			}
		}
		row++
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	for i := range b.Columns {
		if f64[i] != nil {
			b.Columns[i].Float64 = f64[i][:row]
		}
		if f32[i] != nil {
			b.Columns[i].Float32 = f32[i][:row]
		}
	}
	for i := range texts {
		if b.Columns[i].Kind != messages.ColumnText {
			continue
		}
		all := string(texts[i].buf)
		out := make([]string, len(texts[i].ends))
		start := 0
		for j, end := range texts[i].ends {
			out[j] = all[start:end]
			start = end
		}
		b.Columns[i].Text = out
	}
	return wireBytes, nil
}

// decodeArray spreads a fixed-length array over its element columns at row: a NULL array
// makes every element NULL, as does a NULL element.
func decodeArray(cols []messages.RawColumn, f64 [][]float64, f32 [][]float32, row int, v []byte, w wire) error {
	if v == nil {
		for j := range cols {
			cols[j].SetNull(row)
		}
		return nil
	}
	oid := uint32(pgbinary.Float4OID)
	if w == wireFloat8Array {
		oid = pgbinary.Float8OID
	}
	err := pgbinary.Array(v, oid, len(cols), func(j int, e []byte) {
		switch {
		case e == nil:
			cols[j].SetNull(row)
		case f32[j] != nil:
			f32[j][row] = math.Float32frombits(binary.BigEndian.Uint32(e)) // a float4 array, so 4 bytes
		default:
			f64[j][row] = pgbinary.Float(e)
		}
	})
	var le *pgbinary.LengthError
	if errors.As(err, &le) {
		return fmt.Errorf("%w (the plan took the length from the table when the job was planned): %w", err, ErrBadValue)
	}
	return err
}

func errOr(err error, msg string) error {
	if err != nil {
		return err
	}
	return errors.New(msg)
}

func decodeInt8(v []byte, format int16) (int64, error) {
	if format == pgx.TextFormatCode {
		return strconv.ParseInt(string(v), 10, 64)
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("int8 of %d bytes", len(v))
	}
	return int64(binary.BigEndian.Uint64(v)), nil
}

// decodeNumber converts one value of a numeric column as the cast to float8 would.
func decodeNumber(v []byte, w wire, format int16) (float64, error) {
	if format == pgx.TextFormatCode {
		switch w {
		case wireBool:
			x, err := pgbinary.BoolText(v)
			return float64(x), err
		case wireDate, wireTimestamp:
			// Their text form follows the session's DateStyle and TimeZone.
			return 0, fmt.Errorf("a %s arrives as text (a simple-protocol connection): the fetcher reads dates and timestamps in binary only: %w", w, ErrBadPlan)
		case wireInt2:
			i, err := strconv.ParseInt(string(v), 10, 16)
			return float64(i), err
		case wireInt4:
			i, err := strconv.ParseInt(string(v), 10, 32)
			return float64(i), err
		case wireInt8:
			i, err := strconv.ParseInt(string(v), 10, 64)
			return float64(i), err
		case wireFloat4:
			// PostgreSQL prints a real in the fewest digits that read back as the same
			// float32: that float32 is the value, not the float64 the digits spell.
			return strconv.ParseFloat(string(v), 32)
		}
		return strconv.ParseFloat(string(v), 64)
	}
	switch {
	case w == wireFloat8 && len(v) == 8:
		return math.Float64frombits(binary.BigEndian.Uint64(v)), nil
	case w == wireFloat4 && len(v) == 4:
		return float64(math.Float32frombits(binary.BigEndian.Uint32(v))), nil
	case w == wireInt2 && len(v) == 2:
		return float64(int16(binary.BigEndian.Uint16(v))), nil
	case w == wireInt4 && len(v) == 4:
		return float64(int32(binary.BigEndian.Uint32(v))), nil
	case w == wireInt8 && len(v) == 8:
		return float64(int64(binary.BigEndian.Uint64(v))), nil
	case w == wireBool:
		x, err := pgbinary.Bool(v)
		return float64(x), err
	case w == wireDate:
		return pgbinary.DateSeconds(v)
	case w == wireTimestamp:
		return pgbinary.TimestampSeconds(v)
	}
	return 0, fmt.Errorf("%s of %d bytes", w, len(v))
}

// decodeFloat32 reads a value of a column that travels as float32 (real or smallint, which
// NewRangeReader checked): a binary real keeps its bits, anything else is exact in float32.
func decodeFloat32(v []byte, w wire, format int16) (float32, error) {
	if w == wireFloat4 && format != pgx.TextFormatCode {
		if len(v) != 4 {
			return 0, fmt.Errorf("float4 of %d bytes", len(v))
		}
		return math.Float32frombits(binary.BigEndian.Uint32(v)), nil
	}
	x, err := decodeNumber(v, w, format)
	return float32(x), err
}

func kindName(kind uint8) string {
	switch kind {
	case messages.ColumnFloat64:
		return "float64"
	case messages.ColumnFloat32:
		return "float32"
	case messages.ColumnText:
		return "text"
	}
	return fmt.Sprintf("kind %d", kind)
}

// truncate keeps the first n rows of b.
func truncate(b *messages.RawBatch, n int) {
	b.Keys = b.Keys[:n]
	for i := range b.KeyText {
		b.KeyText[i] = b.KeyText[i][:n]
	}
	for i := range b.Columns {
		c := &b.Columns[i]
		if c.Float64 != nil {
			c.Float64 = c.Float64[:n]
		}
		if c.Float32 != nil {
			c.Float32 = c.Float32[:n]
		}
		if c.Text != nil {
			c.Text = c.Text[:n]
		}
		nb := (n + 7) / 8
		if len(c.Nulls) > nb {
			c.Nulls = c.Nulls[:nb]
		}
		if n%8 != 0 && len(c.Nulls) == nb {
			c.Nulls[nb-1] &= byte(1)<<(n%8) - 1
		}
	}
}

// Permanent reports whether a read error will happen again whatever the retries: the data
// or the schema is wrong (SQLSTATE classes 22, 42, 0A, 21, 23, 2B, 44), the plan cannot be
// read with, or a row is too large. Connection losses, server restarts, timeouts and
// resource errors are not permanent: the same page is read again.
func Permanent(err error) bool {
	if errors.Is(err, ErrRowTooLarge) || errors.Is(err, ErrBadPlan) || errors.Is(err, ErrBadValue) || errors.Is(err, pgbinary.ErrFormat) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && len(pgErr.Code) == 5 {
		switch pgErr.Code[:2] {
		case "22", "42", "0A", "21", "23", "2B", "44":
			return true
		}
	}
	return false
}
