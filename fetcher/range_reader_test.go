package fetcher

import (
	"bytes"
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/internal/testenv"
	"pgtrain/messages"
)

// readerPlan reads "odd schema"."data set": an int4 key, a real with NULLs, a numeric, a
// text column with NULLs (and a quote in its name), and a float label.
func readerPlan(pageRows int) *messages.Plan {
	return &messages.Plan{
		JobID:  "job-1",
		Schema: "odd schema",
		Table:  "data set",
		Key:    "id",
		Features: []messages.ColumnPlan{
			{Name: "x", Kind: messages.KindNumeric},
			{Name: "amount", Kind: messages.KindNumeric},
			{Name: `ci"ty`, Kind: messages.KindCategorical, Vocabulary: []string{"a"}},
		},
		Label:    messages.ColumnPlan{Name: "y", Kind: messages.KindNumeric},
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
		pg, err := r.ReadPage(context.Background(), 0, rng, p, last)
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
			if (w.x == nil) != x.IsNull(r) || w.x != nil && x.Float64[r] != *w.x {
				t.Fatalf("key %d: x = %v (null %v), want %v", w.key, x.Float64[r], x.IsNull(r), w.x)
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
				again, err := r2.ReadPage(context.Background(), 0, tt.rng, p, last)
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
		again, err := r.ReadPage(ctx, 0, rng, p, pages[p-1].LastKey)
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
	p0, err := rw.ReadPage(ctx, 0, rng, 0, 0)
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
	_, err = tiny.ReadPage(ctx, 0, rng, 0, 0)
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
	_, err = r.ReadPage(ctx, 0, messages.KeyRange{Lo: 0, Hi: 100}, 0, 0)
	if err == nil || !Permanent(err) || !strings.Contains(err.Error(), "snapshot") {
		t.Fatalf("after the exporter ended: err = %v (permanent %v), want a permanent snapshot error", err, Permanent(err))
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
			_, err = r.ReadPage(ctx, 0, messages.KeyRange{Lo: 0, Hi: 10}, 0, 0)
			if err == nil || Permanent(err) != tt.perm {
				t.Fatalf("err = %v, permanent = %v, want %v", err, Permanent(err), tt.perm)
			}
		})
	}
	// A cancelled read is not permanent: it is retried or abandoned by the caller.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	r, _ := NewRangeReader(pool, plan, 1<<20)
	if _, err := r.ReadPage(cctx, 0, messages.KeyRange{Lo: 0, Hi: 10}, 0, 0); err == nil || Permanent(err) {
		t.Fatalf("cancelled read: err = %v, want a non-permanent error", err)
	}
}
