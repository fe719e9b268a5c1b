package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"pgtrain/messages"
)

// The Go baselines are what a user writes without pgtrain: read the table, then standardise
// the numeric columns and one-hot the category into float32 arrays, all in one process.
// Each runs in its own process (the harness re-executes itself with --baseline NAME), so its
// peak RSS is its own.
var goBaselines = map[string]func(ctx context.Context, conn *pgx.Conn, table string) (baselineOutput, error){
	"copy":     copyCeiling,
	"fetchall": fetchAll,
	"cursor":   cursorBatches,
	"csv":      copyCSV,
	// Not a usual way: the fetchers' own read pattern, to tell PostgreSQL's share of the
	// first epoch from the rest of the pipeline.
	"keyset": func(ctx context.Context, conn *pgx.Conn, table string) (baselineOutput, error) {
		return keysetPages(ctx, conn, table, "::float8")
	},
	"keyset-float4": func(ctx context.Context, conn *pgx.Conn, table string) (baselineOutput, error) {
		return keysetPages(ctx, conn, table, "")
	},
	"range-copy": rangeCopies,
	// The writing side's ceiling, beside the prediction runs.
	"copy-from": copyFromOut,
}

// baselineOutput is what a baseline process prints on stdout, as one JSON object.
type baselineOutput struct {
	Rows    int64   `json:"rows"`
	Seconds float64 `json:"seconds"`
	Bytes   int64   `json:"bytes,omitempty"`
	// Width is the columns of the feature matrix; XSum and YSum let the harness check that
	// every way produced the same arrays.
	Width int     `json:"width,omitempty"`
	XSum  float64 `json:"x_sum,omitempty"`
	YSum  float64 `json:"y_sum,omitempty"`
	// PGCPUSeconds is filled in by the harness: what the server spent serving this reader.
	PGCPUSeconds float64 `json:"-"`
}

// runBaseline is the --baseline mode: connect, read the table one way, print the result.
func runBaseline(ctx context.Context, name, dsn, table string, out io.Writer) error {
	fn, ok := goBaselines[name]
	if !ok {
		return fmt.Errorf("unknown baseline %q", name)
	}
	start := time.Now()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	res, err := fn(ctx, conn, table)
	if err != nil {
		return fmt.Errorf("baseline %s: %w", name, err)
	}
	// A baseline that times only part of its work (copy-from: not the table's creation)
	// sets Seconds itself.
	if res.Seconds == 0 {
		res.Seconds = time.Since(start).Seconds()
	}
	return writeJSON(out, res)
}

// countingDiscard counts what it is given and keeps nothing.
type countingDiscard struct{ n int64 }

func (w *countingDiscard) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

// copyCeiling is the ceiling: PostgreSQL's fastest way out, binary COPY of the needed
// columns, into a writer that discards it. Nothing is decoded.
func copyCeiling(ctx context.Context, conn *pgx.Conn, table string) (baselineOutput, error) {
	var w countingDiscard
	tag, err := conn.PgConn().CopyTo(ctx, &w,
		fmt.Sprintf("copy %s (%s) to stdout with (format binary)", pgx.Identifier{table}.Sanitize(), columnList()))
	if err != nil {
		return baselineOutput{}, err
	}
	return baselineOutput{Rows: tag.RowsAffected(), Bytes: w.n}, nil
}

// keysetPages reads the table the way a fetcher does: keyset pages of keysetPageRows rows,
// binary results, the numbers cast to float8 (cast is "::float8") or as stored (cast is "",
// as the fetchers select real columns), every value left undecoded.
func keysetPages(ctx context.Context, conn *pgx.Conn, table, cast string) (baselineOutput, error) {
	sel := "select id::int8"
	for _, f := range featureNames() {
		sel += ", " + f + cast
	}
	sel += ", cat::text, y" + cast
	sql := sel + " from " + pgx.Identifier{table}.Sanitize() + " where id > $1::int8 and id <= $2::int8 order by id limit $3"
	var out baselineOutput
	last := int64(math.MinInt64)
	for {
		rows, err := conn.Query(ctx, sql, pgx.QueryExecModeCacheDescribe, last, int64(math.MaxInt64), keysetPageRows)
		if err != nil {
			return out, err
		}
		n := 0
		for rows.Next() {
			n++
			if n == keysetPageRows {
				key := rows.RawValues()[0]
				if len(key) != 8 {
					rows.Close()
					return out, fmt.Errorf("key of %d bytes", len(key))
				}
				last = int64(binary.BigEndian.Uint64(key))
			}
		}
		if err := rows.Err(); err != nil {
			return out, err
		}
		out.Rows += int64(n)
		if n < keysetPageRows {
			return out, nil
		}
	}
}

// keysetPageRows is the planner's largest page.
const keysetPageRows = 16384

// rangeCopies reads the table in the planner's default key ranges, each with one
// `COPY (SELECT ... WHERE key > lo AND key <= hi ORDER BY key) TO STDOUT (FORMAT binary)`
// into a discarding writer: what reading a range by COPY and cutting it into pages in the
// client would cost PostgreSQL, beside the keyset pages. The table's keys are 1..rows, so
// the ranges are key intervals of messages.DefaultRangeRows.
func rangeCopies(ctx context.Context, conn *pgx.Conn, table string) (baselineOutput, error) {
	var w countingDiscard
	var out baselineOutput
	sel := "select id, " + strings.Join(featureNames(), ", ") + ", cat, y from " + pgx.Identifier{table}.Sanitize()
	for lo := int64(0); ; lo += messages.DefaultRangeRows {
		// COPY takes no parameters; the bounds are integers formatted here.
		sql := fmt.Sprintf("copy (%s where id > %d and id <= %d order by id) to stdout with (format binary)", sel, lo, lo+messages.DefaultRangeRows)
		tag, err := conn.PgConn().CopyTo(ctx, &w, sql)
		if err != nil {
			return out, err
		}
		out.Rows += tag.RowsAffected()
		if tag.RowsAffected() < messages.DefaultRangeRows {
			out.Bytes = w.n
			return out, nil
		}
	}
}

func selectAll(table string) string {
	return fmt.Sprintf("select %s from %s", columnList(), pgx.Identifier{table}.Sanitize())
}

// record is one row as a fetchall-style program holds it.
type record struct {
	ID  int64
	F   [numFeatures]float32
	Cat string
	Y   float32
}

// fetchAll runs one query and keeps every row in memory before building the arrays, like
// cursor.fetchall() or pgx.CollectRows.
func fetchAll(ctx context.Context, conn *pgx.Conn, table string) (baselineOutput, error) {
	rows, err := conn.Query(ctx, selectAll(table))
	if err != nil {
		return baselineOutput{}, err
	}
	var all []record
	var r record
	dest := []any{&r.ID}
	for i := range r.F {
		dest = append(dest, &r.F[i])
	}
	dest = append(dest, &r.Cat, &r.Y)
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			rows.Close()
			return baselineOutput{}, err
		}
		all = append(all, r)
	}
	if err := rows.Err(); err != nil {
		return baselineOutput{}, err
	}
	var a arrays
	for i := range all {
		a.add(all[i].F[:], all[i].Cat, all[i].Y)
	}
	out := a.finish()
	runtime.KeepAlive(all) // the rows stay referenced until the arrays are built, as in a script
	return out, nil
}

// cursorBatches reads through a server-side cursor, 1024 rows per FETCH, appending each
// batch to growing arrays.
func cursorBatches(ctx context.Context, conn *pgx.Conn, table string) (baselineOutput, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return baselineOutput{}, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, "declare train_rows no scroll cursor for "+selectAll(table)); err != nil {
		return baselineOutput{}, err
	}
	var a arrays
	var id int64
	var f [numFeatures]float32
	var cat string
	var y float32
	dest := []any{&id}
	for i := range f {
		dest = append(dest, &f[i])
	}
	dest = append(dest, &cat, &y)
	for {
		rows, err := tx.Query(ctx, "fetch 1024 from train_rows")
		if err != nil {
			return baselineOutput{}, err
		}
		n := 0
		for rows.Next() {
			if err := rows.Scan(dest...); err != nil {
				rows.Close()
				return baselineOutput{}, err
			}
			a.add(f[:], cat, y)
			n++
		}
		if err := rows.Err(); err != nil {
			return baselineOutput{}, err
		}
		if n == 0 {
			break
		}
	}
	return a.finish(), tx.Commit(ctx)
}

// copyCSV parses `COPY ... TO STDOUT WITH CSV` with encoding/csv and strconv as it streams.
func copyCSV(ctx context.Context, conn *pgx.Conn, table string) (baselineOutput, error) {
	pr, pw := io.Pipe()
	copyErr := make(chan error, 1)
	go func() {
		_, err := conn.PgConn().CopyTo(ctx, pw,
			fmt.Sprintf("copy (%s) to stdout with csv", selectAll(table)))
		pw.CloseWithError(err)
		copyErr <- err
	}()
	cr := csv.NewReader(bufio.NewReaderSize(pr, 1<<16))
	cr.ReuseRecord = true
	cr.FieldsPerRecord = len(columns())
	var a arrays
	var f [numFeatures]float32
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			pr.CloseWithError(err)
			<-copyErr
			return baselineOutput{}, err
		}
		if _, err := strconv.ParseInt(rec[0], 10, 64); err != nil {
			return baselineOutput{}, err
		}
		for i := range f {
			v, err := strconv.ParseFloat(rec[1+i], 32)
			if err != nil {
				return baselineOutput{}, err
			}
			f[i] = float32(v)
		}
		y, err := strconv.ParseFloat(rec[len(rec)-1], 32)
		if err != nil {
			return baselineOutput{}, err
		}
		a.add(f[:], rec[len(rec)-2], float32(y))
	}
	if err := <-copyErr; err != nil {
		return baselineOutput{}, err
	}
	return a.finish(), nil
}

// arrays collects raw columns, then turns them into the training arrays: numeric columns
// standardised (population standard deviation, as scikit-learn's StandardScaler), the
// category one-hot over its sorted values (as pandas.get_dummies), float32 throughout.
type arrays struct {
	n     int
	num   []float32
	cat   []int32
	vocab map[string]int32
	names []string
	y     []float32
}

func (a *arrays) add(f []float32, cat string, y float32) {
	if a.vocab == nil {
		a.vocab = map[string]int32{}
	}
	idx, ok := a.vocab[cat]
	if !ok {
		idx = int32(len(a.names))
		a.vocab[cat] = idx
		a.names = append(a.names, cat)
	}
	a.num = append(a.num, f...)
	a.cat = append(a.cat, idx)
	a.y = append(a.y, y)
	a.n++
}

func (a *arrays) finish() baselineOutput {
	nf := numFeatures
	mean := make([]float64, nf)
	sq := make([]float64, nf)
	for r := 0; r < a.n; r++ {
		row := a.num[r*nf : (r+1)*nf]
		for j, v := range row {
			mean[j] += float64(v)
			sq[j] += float64(v) * float64(v)
		}
	}
	scale := make([]float64, nf)
	for j := range mean {
		mean[j] /= float64(a.n)
		sd := math.Sqrt(math.Max(sq[j]/float64(a.n)-mean[j]*mean[j], 0))
		scale[j] = 1
		if sd > 0 {
			scale[j] = 1 / sd
		}
	}
	sorted := slices.Clone(a.names)
	slices.Sort(sorted)
	slot := make([]int, len(a.names))
	for i, name := range a.names {
		slot[i], _ = slices.BinarySearch(sorted, name)
	}
	width := nf + len(sorted)
	x := make([]float32, a.n*width)
	for r := 0; r < a.n; r++ {
		row := x[r*width : (r+1)*width]
		for j, v := range a.num[r*nf : (r+1)*nf] {
			row[j] = float32((float64(v) - mean[j]) * scale[j])
		}
		row[nf+slot[a.cat[r]]] = 1
	}
	out := baselineOutput{Rows: int64(a.n), Width: width}
	for _, v := range x {
		out.XSum += float64(v)
	}
	for _, v := range a.y {
		out.YSum += float64(v)
	}
	return out
}
