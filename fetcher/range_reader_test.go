package fetcher

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/internal/testenv"
	"pgtrain/messages"
)

// readerPlan reads "odd schema"."data set": an int4 key, a real with NULLs (read as
// float32), a numeric (cast to float8), a text column with NULLs (and a quote in its name),
// and a float8 label.
func readerPlan(pageRows int) *messages.Plan {
	return &messages.Plan{
		JobID:  "job-1",
		Schema: "odd schema",
		Table:  "data set",
		Key:    "id",
		Features: []messages.ColumnPlan{
			{Name: "x", Kind: messages.KindNumeric, PGType: "real"},
			{Name: "amount", Kind: messages.KindNumeric, PGType: "numeric"},
			{Name: `ci"ty`, Kind: messages.KindCategorical, PGType: "text", Vocabulary: []string{"a"}},
		},
		Label:    messages.ColumnPlan{Name: "y", Kind: messages.KindNumeric, PGType: "double precision"},
		InputDim: 4,
		LabelDim: 1,
		PageRows: pageRows,
	}
}

func createReaderTable(t *testing.T, pool *pgxpool.Pool, rows int) {
	t.Helper()
	ctx := context.Background()
	_, err := pool.Exec(ctx, `
		CREATE SCHEMA "odd schema";
		CREATE TABLE "odd schema"."data set" (id int4 PRIMARY KEY, x real, amount numeric, "ci""ty" text, y float8);`)
	if err != nil {
		t.Fatal(err)
	}
	// Keys 10, 20, 30, ...: gaps, so that page boundaries are keys, not offsets.
	_, err = pool.Exec(ctx, `
		INSERT INTO "odd schema"."data set"
		SELECT i*10,
		       CASE WHEN i % 5 = 0 THEN NULL ELSE i * 0.5 END,
		       i * 1.25,
		       CASE WHEN i % 7 = 0 THEN NULL ELSE 'city-' || (i % 3) || repeat('x', i % 4) END,
		       -i
		FROM generate_series(1, $1) i`, rows)
	if err != nil {
		t.Fatal(err)
	}
}

// wantRows is what SQL says the rows of [lo, hi] are, for comparing with the pages.
type wantRow struct {
	key    int64
	x      *float64
	amount float64
	city   *string
	y      float64
}

func sqlRows(t *testing.T, pool *pgxpool.Pool, lo, hi int64) []wantRow {
	t.Helper()
	rows, err := pool.Query(context.Background(),
		`SELECT id, x, amount, "ci""ty", y FROM "odd schema"."data set" WHERE id BETWEEN $1::int8 AND $2::int8 ORDER BY id`, lo, hi)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []wantRow
	for rows.Next() {
		var r wantRow
		var x *float32
		if err := rows.Scan(&r.key, &x, &r.amount, &r.city, &r.y); err != nil {
			t.Fatal(err)
		}
		if x != nil {
			v := float64(*x)
			r.x = &v
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// readAll reads a range page by page as a fetcher does.
func readAll(t *testing.T, r *RangeReader, rng messages.KeyRange) []*Page {
	t.Helper()
	var pages []*Page
	last := int64(0)
	for p := 0; ; p++ {
		pg, err := r.ReadPage(context.Background(), 0, rng, p, last, nil)
		if err != nil {
			t.Fatalf("page %d: %v", p, err)
		}
		if pg.Batch.Page != p || pg.Batch.Range != rng.Index || pg.Batch.JobID != "job-1" {
			t.Fatalf("page %d has id %v", p, pg.Batch.BatchID)
		}
		pages = append(pages, pg)
		last = pg.LastKey
		if pg.Batch.Last {
			return pages
		}
		if p > 10000 {
			t.Fatal("no last page")
		}
	}
}

func checkPagesMatchSQL(t *testing.T, pages []*Page, want []wantRow, pageRows int) {
	t.Helper()
	i := 0
	for pi, pg := range pages {
		b := pg.Batch
		if b.Rows() > pageRows {
			t.Fatalf("page %d has %d rows, over %d", pi, b.Rows(), pageRows)
		}
		if (pi == len(pages)-1) != b.Last {
			t.Fatalf("page %d of %d: Last = %v", pi, len(pages), b.Last)
		}
		// The published bytes decode to the same batch.
		dec, err := messages.DecodeRaw(pg.Data)
		if err != nil {
			t.Fatalf("page %d: %v", pi, err)
		}
		if dec.Rows() != b.Rows() || dec.Last != b.Last || dec.BatchID != b.BatchID {
			t.Fatalf("page %d decodes to %v rows=%d last=%v", pi, dec.BatchID, dec.Rows(), dec.Last)
		}
		for r := 0; r < dec.Rows(); r++ {
			if i >= len(want) {
				t.Fatalf("page %d has more rows than SQL", pi)
			}
			w := want[i]
			i++
			x, amount, city, y := &dec.Columns[0], &dec.Columns[1], &dec.Columns[2], &dec.Columns[3]
			if x.Name != "x" || amount.Name != "amount" || city.Name != `ci"ty` || y.Name != "y" {
				t.Fatalf("column names %q %q %q %q", x.Name, amount.Name, city.Name, y.Name)
			}
			if dec.Keys[r] != w.key {
				t.Fatalf("page %d row %d: key %d, want %d", pi, r, dec.Keys[r], w.key)
			}
			if x.Kind != messages.ColumnFloat32 || amount.Kind != messages.ColumnFloat64 || y.Kind != messages.ColumnFloat64 {
				t.Fatalf("column kinds %d %d %d", x.Kind, amount.Kind, y.Kind)
			}
			if (w.x == nil) != x.IsNull(r) || w.x != nil && float64(x.Float32[r]) != *w.x {
				t.Fatalf("key %d: x = %v (null %v), want %v", w.key, x.Float32[r], x.IsNull(r), w.x)
			}
			if amount.IsNull(r) || amount.Float64[r] != w.amount {
				t.Fatalf("key %d: amount = %v, want %v", w.key, amount.Float64[r], w.amount)
			}
			if (w.city == nil) != city.IsNull(r) || w.city != nil && city.Text[r] != *w.city {
				t.Fatalf("key %d: city = %q (null %v), want %v", w.key, city.Text[r], city.IsNull(r), w.city)
			}
			if y.Float64[r] != w.y {
				t.Fatalf("key %d: y = %v, want %v", w.key, y.Float64[r], w.y)
			}
		}
	}
	if i != len(want) {
		t.Fatalf("pages hold %d rows, SQL says %d", i, len(want))
	}
}

func TestRangeReader(t *testing.T) {
	pool, _ := testenv.Pool(t)
	createReaderTable(t, pool, 100) // keys 10..1000

	tests := []struct {
		name      string
		rng       messages.KeyRange
		pageRows  int
		wantPages int
	}{
		{"whole table, int64 bounds on an int4 key", messages.KeyRange{Index: 0, Lo: math.MinInt64, Hi: math.MaxInt64}, 7, 15},
		{"bounds are inclusive", messages.KeyRange{Index: 3, Lo: 100, Hi: 200}, 4, 3},
		{"a multiple of the page size has no empty tail", messages.KeyRange{Index: 1, Lo: 15, Hi: 85}, 4, 2},
		{"empty range is one empty last page", messages.KeyRange{Index: 2, Lo: 1001, Hi: 5000}, 4, 1},
		{"one row", messages.KeyRange{Index: 4, Lo: 500, Hi: 500}, 4, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewRangeReader(pool, readerPlan(tt.pageRows), 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			pages := readAll(t, r, tt.rng)
			if len(pages) != tt.wantPages {
				t.Fatalf("%d pages, want %d", len(pages), tt.wantPages)
			}
			checkPagesMatchSQL(t, pages, sqlRows(t, pool, tt.rng.Lo, tt.rng.Hi), tt.pageRows)

			// A second reader resuming at any (page, last key) produces the same bytes.
			r2, err := NewRangeReader(pool, readerPlan(tt.pageRows), 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			for p := range pages {
				last := int64(0)
				if p > 0 {
					last = pages[p-1].LastKey
				}
				again, err := r2.ReadPage(context.Background(), 0, tt.rng, p, last, nil)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(again.Data, pages[p].Data) || again.LastKey != pages[p].LastKey {
					t.Fatalf("resumed page %d differs", p)
				}
			}
		})
	}
}

func TestRangeReaderHalvesPagesOverMaxBytes(t *testing.T) {
	pool, _ := testenv.Pool(t)
	createReaderTable(t, pool, 0)
	ctx := context.Background()
	// 40 rows of about 300 bytes of text each.
	if _, err := pool.Exec(ctx, `INSERT INTO "odd schema"."data set" SELECT i, i, i, repeat(chr(65 + i % 26), 300), i FROM generate_series(1, 40) i`); err != nil {
		t.Fatal(err)
	}
	rng := messages.KeyRange{Lo: 0, Hi: 1000}
	const maxBytes = 2500 // 16 rows are ~5.4 kB, 8 ~2.7 kB, 4 ~1.4 kB: pages of 4 rows
	r, err := NewRangeReader(pool, readerPlan(16), maxBytes)
	if err != nil {
		t.Fatal(err)
	}
	pages := readAll(t, r, rng)
	var sizes []int
	for _, p := range pages {
		if len(p.Data) > maxBytes {
			t.Fatalf("page %d is %d bytes, over %d", p.Batch.Page, len(p.Data), maxBytes)
		}
		sizes = append(sizes, p.Batch.Rows())
	}
	// 16 rows halve to 8 and then to 4, which fit; the last 12 rows halve to 6, which fit.
	want := []int{4, 4, 4, 4, 4, 4, 4, 6, 6}
	if len(sizes) != len(want) {
		t.Fatalf("page sizes %v, want %v", sizes, want)
	}
	for i := range want {
		if sizes[i] != want[i] {
			t.Fatalf("page sizes %v, want %v", sizes, want)
		}
	}
	checkPagesMatchSQL(t, pages, sqlRows(t, pool, rng.Lo, rng.Hi), 16)
	for p := 1; p < len(pages); p++ {
		again, err := r.ReadPage(ctx, 0, rng, p, pages[p-1].LastKey, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again.Data, pages[p].Data) {
			t.Fatalf("resumed page %d differs", p)
		}
	}

	// A wide READY row shrinks pages too: 4 rows × (8 + 4×(250+1)) > 2500 >= 2 rows + header.
	wide := readerPlan(16)
	wide.InputDim = 250
	rw, err := NewRangeReader(pool, wide, maxBytes)
	if err != nil {
		t.Fatal(err)
	}
	p0, err := rw.ReadPage(ctx, 0, rng, 0, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p0.Batch.Rows() != 2 {
		t.Fatalf("wide plan: first page has %d rows, want 2", p0.Batch.Rows())
	}

	// One row larger than a message is a permanent error.
	tiny, err := NewRangeReader(pool, readerPlan(16), 200)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tiny.ReadPage(ctx, 0, rng, 0, 0, nil)
	if !errors.Is(err, ErrRowTooLarge) || !Permanent(err) {
		t.Fatalf("err = %v, want ErrRowTooLarge", err)
	}
}

func TestRangeReaderSnapshot(t *testing.T) {
	pool, _ := testenv.Pool(t)
	createReaderTable(t, pool, 20)
	ctx := context.Background()

	// The exporting transaction stays open for as long as readers join its snapshot.
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"); err != nil {
		t.Fatal(err)
	}
	var snap string
	if err := tx.QueryRow(ctx, "SELECT pg_export_snapshot()").Scan(&snap); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `DELETE FROM "odd schema"."data set" WHERE id <= 50; INSERT INTO "odd schema"."data set" VALUES (5000, 1, 1, 'new', 1)`); err != nil {
		t.Fatal(err)
	}

	plan := readerPlan(6)
	plan.Snapshot = snap
	r, err := NewRangeReader(pool, plan, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	pages := readAll(t, r, messages.KeyRange{Lo: math.MinInt64, Hi: math.MaxInt64})
	var keys []int64
	for _, p := range pages {
		keys = append(keys, p.Batch.Keys...)
	}
	if len(keys) != 20 || keys[0] != 10 || keys[19] != 200 {
		t.Fatalf("snapshot read saw %d keys %v, want the 20 rows as of the snapshot", len(keys), keys)
	}
	plain, err := NewRangeReader(pool, readerPlan(100), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	now := readAll(t, plain, messages.KeyRange{Lo: math.MinInt64, Hi: math.MaxInt64})
	if n := now[0].Batch.Rows(); n != 16 {
		t.Fatalf("without the snapshot: %d rows, want 16", n)
	}

	// Once the exporting transaction ends, the snapshot cannot be joined: permanent.
	tx.Rollback(ctx)
	_, err = r.ReadPage(ctx, 0, messages.KeyRange{Lo: 0, Hi: 100}, 0, 0, nil)
	if err == nil || !Permanent(err) || !strings.Contains(err.Error(), "snapshot") {
		t.Fatalf("after the exporter ended: err = %v (permanent %v), want a permanent snapshot error", err, Permanent(err))
	}
}

// Numeric columns are read in their own types and converted here instead of cast to float8
// in SQL: every value must be what the cast gives, bit for bit, through binary and through
// text results. The types are named as the coordinator names them (format_type).
func TestRangeReaderNativeNumbers(t *testing.T) {
	pool, dsn := testenv.Pool(t)
	ctx := context.Background()
	_, err := pool.Exec(ctx, `
		CREATE DOMAIN celsius AS real CHECK (VALUE > -273.15);
		CREATE TABLE nums (id int8 PRIMARY KEY, i2 int2, i4 int4, i8 int8, f4 real, f8 float8, num numeric, dom celsius, y real NOT NULL);
		INSERT INTO nums VALUES
			(1, -32768, -2147483648, -9223372036854775808, 1e-45, 1e-300, 1.25, -273, 0.1),
			(2, 32767, 2147483647, 9223372036854775807, 3.4028235e38, -1.7976931348623157e308, 1/3::numeric, 36.6, -0.1),
			(3, 0, 0, 9007199254740993, '-0', '-0', 0, 0, 16777217),
			(4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 1.17549435e-38),
			(5, -1, 123456789, -9007199254740995, 0.1, 0.1, 123456789.123456789, 1e-3, 1e38),
			(6, 7, -7, 4611686018427387905, 123456.79, 2.5e-3, -0.5, 99.99, 3);`)
	if err != nil {
		t.Fatal(err)
	}
	cols := []string{"i2", "i4", "i8", "f4", "f8", "num", "dom", "y"}
	// What the cast gives, and the type names the planner records.
	sel := "SELECT id"
	for _, c := range cols {
		sel += ", " + c + "::float8"
	}
	rows, err := pool.Query(ctx, sel+" FROM nums ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	var want [][]*float64
	for rows.Next() {
		vals := make([]*float64, len(cols))
		dst := []any{new(int64)}
		for i := range vals {
			dst = append(dst, &vals[i])
		}
		if err := rows.Scan(dst...); err != nil {
			t.Fatal(err)
		}
		want = append(want, vals)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	pgType := map[string]string{}
	rows, err = pool.Query(ctx, `SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'nums'::regclass AND attnum > 0`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			t.Fatal(err)
		}
		pgType[name] = typ
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	plan := &messages.Plan{JobID: "job-1", Table: "nums", Key: "id", PageRows: 4, InputDim: len(cols) - 1, LabelDim: 1}
	for _, c := range cols {
		cp := messages.ColumnPlan{Name: c, Kind: messages.KindNumeric, PGType: pgType[c]}
		if c == "y" {
			plan.Label = cp
		} else {
			plan.Features = append(plan.Features, cp)
		}
	}
	wantKind := map[string]uint8{"i2": messages.ColumnFloat32, "f4": messages.ColumnFloat32, "y": messages.ColumnFloat32,
		"i4": messages.ColumnFloat64, "i8": messages.ColumnFloat64, "f8": messages.ColumnFloat64,
		"num": messages.ColumnFloat64, "dom": messages.ColumnFloat64}

	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	textPool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer textPool.Close()

	tests := []struct {
		name string
		pool *pgxpool.Pool
	}{
		{"binary results", pool},
		{"text results", textPool},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewRangeReader(tt.pool, plan, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			pages := readAll(t, r, messages.KeyRange{Lo: math.MinInt64, Hi: math.MaxInt64})
			row := 0
			for _, pg := range pages {
				b, err := messages.DecodeRaw(pg.Data)
				if err != nil {
					t.Fatal(err)
				}
				for i := range b.Keys {
					for ci, c := range b.Columns {
						if c.Name != cols[ci] || c.Kind != wantKind[c.Name] {
							t.Fatalf("column %d is %q of kind %d, want %q of kind %d", ci, c.Name, c.Kind, cols[ci], wantKind[cols[ci]])
						}
						w := want[row][ci]
						if c.IsNull(i) != (w == nil) {
							t.Fatalf("key %d: %s NULL %v, want %v", b.Keys[i], c.Name, c.IsNull(i), w == nil)
						}
						if w == nil {
							continue
						}
						got := 0.0
						if c.Kind == messages.ColumnFloat32 {
							got = float64(c.Float32[i])
						} else {
							got = c.Float64[i]
						}
						if math.Float64bits(got) != math.Float64bits(*w) {
							t.Fatalf("key %d: %s = %v (%#x), the cast gives %v (%#x)", b.Keys[i], c.Name, got, math.Float64bits(got), *w, math.Float64bits(*w))
						}
					}
					row++
				}
			}
			if row != len(want) {
				t.Fatalf("read %d rows, want %d", row, len(want))
			}
		})
	}
}

// A float32 column costs 4 bytes a row on the bus, half a float64 one.
func TestRangeReaderRealIsHalfTheBytes(t *testing.T) {
	pool, _ := testenv.Pool(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE TABLE r (id int8 PRIMARY KEY, a real, b real, y real);
		INSERT INTO r SELECT i, i * 0.5, -i, i FROM generate_series(1, 1000) i`); err != nil {
		t.Fatal(err)
	}
	size := func(pgType string) int {
		plan := &messages.Plan{JobID: "j", Table: "r", Key: "id", PageRows: 1000, InputDim: 2, LabelDim: 1,
			Features: []messages.ColumnPlan{{Name: "a", Kind: messages.KindNumeric, PGType: pgType}, {Name: "b", Kind: messages.KindNumeric, PGType: pgType}},
			Label:    messages.ColumnPlan{Name: "y", Kind: messages.KindNumeric, PGType: pgType}}
		r, err := NewRangeReader(pool, plan, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		pg, err := r.ReadPage(ctx, 0, messages.KeyRange{Lo: 0, Hi: 1000}, 0, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		if pg.Batch.Rows() != 1000 {
			t.Fatalf("%d rows", pg.Batch.Rows())
		}
		return len(pg.Data)
	}
	native, cast := size("real"), size("") // no type recorded: cast to float8 as before
	if native > 8*1000+3*4*1000+200 || cast-native != 3*4*1000 {
		t.Fatalf("1000 rows of 3 reals: %d bytes as float32, %d cast to float8", native, cast)
	}
}

// A column whose type changed since planning is read when its values still convert exactly
// into the raw kind the plan gave it, and is a permanent error otherwise.
func TestRangeReaderTypeChangedSincePlanning(t *testing.T) {
	pool, _ := testenv.Pool(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE TABLE t (id int8 PRIMARY KEY, x float8, y int4);
		INSERT INTO t VALUES (1, 0.1, 70000)`); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name         string
		xType, yType string
		wantErr      string // "" to read x = 0.1 and y = 70000
	}{
		{"as planned", "double precision", "integer", ""},
		{"float8 planned as bigint, int4 as bigint", "bigint", "bigint", ""},
		{"float8 planned as real", "real", "integer", `column "x" arrives with type oid 701, which a float32 raw column cannot carry`},
		{"int4 planned as smallint", "double precision", "smallint", `column "y" arrives with type oid 23, which a float32 raw column cannot carry`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan := &messages.Plan{JobID: "j", Table: "t", Key: "id", PageRows: 10, InputDim: 1, LabelDim: 1,
				Features: []messages.ColumnPlan{{Name: "x", Kind: messages.KindNumeric, PGType: tt.xType}},
				Label:    messages.ColumnPlan{Name: "y", Kind: messages.KindNumeric, PGType: tt.yType}}
			r, err := NewRangeReader(pool, plan, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			pg, err := r.ReadPage(ctx, 0, messages.KeyRange{Lo: 0, Hi: 10}, 0, 0, nil)
			if tt.wantErr != "" {
				if !errors.Is(err, ErrBadPlan) || !Permanent(err) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want a permanent ErrBadPlan containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			x, y := pg.Batch.Columns[0], pg.Batch.Columns[1]
			if x.Float64[0] != 0.1 || y.Float64[0] != 70000 {
				t.Fatalf("x = %v, y = %v", x.Float64, y.Float64)
			}
		})
	}
}

// The raw kind messages gives each type and the type the reader selects agree: a float32
// column only ever receives what it holds exactly, and every type it can hold goes as one.
func TestNativeNumbersAgreeWithRawKind(t *testing.T) {
	for name, w := range nativeNumbers {
		kind := messages.ColumnPlan{Kind: messages.KindNumeric, PGType: name}.RawKind()
		if !carries(kind, w) || carries(messages.ColumnFloat32, w) != (kind == messages.ColumnFloat32) {
			t.Errorf("%s arrives as %s and travels as %s", name, w, kindName(kind))
		}
	}
}

func TestNewRangeReaderRejects(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*messages.Plan)
		wantErr string
	}{
		{"ok", func(*messages.Plan) {}, ""},
		{"snapshot id with a quote", func(p *messages.Plan) { p.Snapshot = "00000003-0000001B-1'; DROP TABLE x; --" }, "only hex digits"},
		{"no page size", func(p *messages.Plan) { p.PageRows = 0 }, "page_rows is 0"},
		{"unknown kind", func(p *messages.Plan) { p.Label.Kind = "blob" }, `unknown kind "blob"`},
		{"no table", func(p *messages.Plan) { p.Table = "" }, "no table"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := readerPlan(10)
			tt.edit(p)
			_, err := NewRangeReader(nil, p, 1<<20)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrBadPlan) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want ErrBadPlan containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestPermanentErrors(t *testing.T) {
	pool, _ := testenv.Pool(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE TABLE t (id int8, x text, y float8)`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO t VALUES (1, 'not a number', 1)`); err != nil {
		t.Fatal(err)
	}
	plan := &messages.Plan{JobID: "j", Table: "t", Key: "id", PageRows: 10,
		Features: []messages.ColumnPlan{{Name: "x", Kind: messages.KindNumeric}},
		Label:    messages.ColumnPlan{Name: "y", Kind: messages.KindNumeric}}
	tests := []struct {
		name string
		edit func(*messages.Plan)
		perm bool
	}{
		{"a value that does not cast", func(*messages.Plan) {}, true},
		{"a column that does not exist", func(p *messages.Plan) { p.Features[0].Name = "nope" }, true},
		{"a table that does not exist", func(p *messages.Plan) { p.Table = "gone" }, true},
		{"a text column planned as real", func(p *messages.Plan) { p.Features[0].PGType = "real" }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := *plan
			p.Features = append([]messages.ColumnPlan(nil), plan.Features...)
			tt.edit(&p)
			r, err := NewRangeReader(pool, &p, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			_, err = r.ReadPage(ctx, 0, messages.KeyRange{Lo: 0, Hi: 10}, 0, 0, nil)
			if err == nil || Permanent(err) != tt.perm {
				t.Fatalf("err = %v, permanent = %v, want %v", err, Permanent(err), tt.perm)
			}
		})
	}
	// A cancelled read is not permanent: it is retried or abandoned by the caller.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	r, _ := NewRangeReader(pool, plan, 1<<20)
	if _, err := r.ReadPage(cctx, 0, messages.KeyRange{Lo: 0, Hi: 10}, 0, 0, nil); err == nil || Permanent(err) {
		t.Fatalf("cancelled read: err = %v, want a non-permanent error", err)
	}
}

// FuzzDecodeNumber: any bytes in either format, for every numeric wire type, decode without
// panicking; binary values decode exactly when their length is the type's, to the value the
// bytes hold; a float32 column's value is the float64 one narrowed, which loses nothing.
func FuzzDecodeNumber(f *testing.F) {
	f.Add(uint8(wireFloat4), []byte{0x3d, 0xcc, 0xcc, 0xcd}, false)
	f.Add(uint8(wireInt8), []byte{0x80, 0, 0, 0, 0, 0, 0, 1}, false)
	f.Add(uint8(wireInt2), []byte("-32768"), true)
	f.Add(uint8(wireFloat4), []byte("1e-45"), true)
	f.Add(uint8(wireFloat8), []byte("-Infinity"), true)
	f.Fuzz(func(t *testing.T, w uint8, v []byte, text bool) {
		wr := wire(w % uint8(wireText))
		format := int16(pgx.BinaryFormatCode)
		if text {
			format = pgx.TextFormatCode
		}
		x, err := decodeNumber(v, wr, format)
		if !text {
			width := map[wire]int{wireFloat8: 8, wireFloat4: 4, wireInt2: 2, wireInt4: 4, wireInt8: 8}[wr]
			if (err == nil) != (len(v) == width) {
				t.Fatalf("%s of %d bytes: err = %v", wr, len(v), err)
			}
			if err != nil {
				return
			}
			var want float64
			switch wr {
			case wireFloat8:
				want = math.Float64frombits(binary.BigEndian.Uint64(v))
			case wireFloat4:
				want = float64(math.Float32frombits(binary.BigEndian.Uint32(v)))
			case wireInt2:
				want = float64(int16(binary.BigEndian.Uint16(v)))
			case wireInt4:
				want = float64(int32(binary.BigEndian.Uint32(v)))
			case wireInt8:
				want = float64(int64(binary.BigEndian.Uint64(v)))
			}
			if math.Float64bits(x) != math.Float64bits(want) && !(math.IsNaN(x) && math.IsNaN(want)) {
				t.Fatalf("%s %x decodes to %v, want %v", wr, v, x, want)
			}
		}
		if wr != wireFloat4 && wr != wireInt2 {
			return
		}
		x32, err32 := decodeFloat32(v, wr, format)
		if (err32 == nil) != (err == nil) {
			t.Fatalf("%s %q: float32 err %v, float64 err %v", wr, v, err32, err)
		}
		if err == nil && float64(x32) != x && !math.IsNaN(x) && !(text && math.IsInf(float64(x32), 0)) {
			t.Fatalf("%s %q: float32 %v, float64 %v", wr, v, x32, x)
		}
		if !text && wr == wireFloat4 && err == nil && math.Float32bits(x32) != binary.BigEndian.Uint32(v) {
			t.Fatalf("float4 %x: bits %#08x", v, math.Float32bits(x32))
		}
	})
}

// A plan's page size is not trusted with memory: a page of a billion rows is read (and
// allocated) as the rows that fit in one message, so the fetcher lives and reads the range.
func TestRangeReaderCapsAHugePageSize(t *testing.T) {
	pool, _ := testenv.Pool(t)
	createReaderTable(t, pool, 100)
	const maxBytes = 4096
	r, err := NewRangeReader(pool, readerPlan(1_000_000_000), maxBytes)
	if err != nil {
		t.Fatal(err)
	}
	plan := readerPlan(1)
	fit := (maxBytes - messages.ReadyBatchBytes(plan.JobID, 0, plan.InputDim, plan.LabelDim)) / messages.ReadyRowBytes(plan.InputDim, plan.LabelDim)
	if r.pageRows != fit {
		t.Fatalf("page rows %d, want the %d rows that fit in %d bytes", r.pageRows, fit, maxBytes)
	}
	rng := messages.KeyRange{Lo: math.MinInt64, Hi: math.MaxInt64}
	pages := readAll(t, r, rng)
	checkPagesMatchSQL(t, pages, sqlRows(t, pool, rng.Lo, rng.Hi), fit)

	// Dimensions no message can hold do not overflow the sizing.
	wide := readerPlan(1_000_000_000)
	wide.InputDim = 1 << 62
	if r, err := NewRangeReader(pool, wide, maxBytes); err != nil || r.pageRows != 1 {
		t.Fatalf("a plan of input_dim 2^62: %v, page rows %d; want a reader of 1-row pages (which fail as too large)", err, r.pageRows)
	}
}
