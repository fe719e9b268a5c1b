package scorer

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/internal/testenv"
	"pgtrain/messages"
)

func regressionPlan(out string) *messages.Plan {
	return &messages.Plan{JobID: "j-1", Key: "id", Prediction: &messages.PredictionPlan{
		OutputSchema: "public", OutputTable: out, Task: messages.TaskRegression, KeyType: "bigint"}}
}

func batch(page int) messages.BatchID { return messages.BatchID{JobID: "j-1", Page: page} }

func batchRows(from, n int64, value float32) [][]any {
	rows := make([][]any, n)
	for i := range rows {
		rows[i] = []any{from + int64(i), value}
	}
	return rows
}

// tableRows reads the output table as key → value, failing on a key twice.
func tableRows(t *testing.T, conn interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, table string) map[int64]float32 {
	t.Helper()
	rows, err := conn.Query(context.Background(), "select id, value from "+pgx.Identifier{table}.Sanitize())
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[int64]float32{}
	for rows.Next() {
		var k int64
		var v float32
		if err := rows.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		if _, dup := got[k]; dup {
			t.Fatalf("key %d twice in %s", k, table)
		}
		got[k] = v
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

// A batch is copied straight into the output table; a batch delivered again, after its
// first write committed or racing it, writes no row twice; rows already in an appended
// table are overwritten by the upsert, and after a few such batches the writer goes
// straight to the upsert.
func TestOutputWriter(t *testing.T) {
	pool, _ := testenv.Pool(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `create table scored (id bigint primary key, value real)`); err != nil {
		t.Fatal(err)
	}
	w, err := NewOutputWriter(pool, regressionPlan("scored"))
	if err != nil {
		t.Fatal(err)
	}

	if err := w.Write(ctx, batch(0), batchRows(1, 100, 1)); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(ctx, batch(0), batchRows(1, 100, 1)); err != nil {
		t.Fatalf("a batch written again: %v", err)
	}
	if got := tableRows(t, pool, "scored"); len(got) != 100 || got[1] != 1 || got[100] != 1 {
		t.Fatalf("after a redelivery: %d rows, want 100 of value 1", len(got))
	}
	if n := w.conflicts.Load(); n != 1 {
		t.Fatalf("%d conflicts counted, want 1 (the redelivery)", n)
	}

	// A redelivery racing the first write: the first holds its keys uncommitted while the
	// second copies, which waits, then finds them committed.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"scored"}, []string{"id", "value"}, pgx.CopyFromRows(batchRows(101, 50, 2))); err != nil {
		t.Fatal(err)
	}
	if err := writeWhileHeld(ctx, t, pool, tx, func() error { return w.Write(ctx, batch(0), batchRows(101, 50, 2)) }); err != nil {
		t.Fatalf("the racing write: %v", err)
	}
	if got := tableRows(t, pool, "scored"); len(got) != 150 || got[101] != 2 || got[150] != 2 {
		t.Fatalf("after a racing redelivery: %d rows, want 150", len(got))
	}

	// Mode append over rows already there: each batch's values replace them.
	for i := range int64(upsertAfter + 2) {
		if err := w.Write(ctx, batch(0), batchRows(1+10*i, 10, float32(3+i))); err != nil {
			t.Fatal(err)
		}
	}
	got := tableRows(t, pool, "scored")
	if len(got) != 150 || got[1] != 3 || got[11] != 4 || got[91] != float32(3+upsertAfter+1) || got[101] != 2 {
		t.Fatalf("after appending over written rows: %d rows, values %v %v %v %v", len(got), got[1], got[11], got[91], got[101])
	}
	if n := w.conflicts.Load(); n != upsertAfter {
		t.Fatalf("%d COPYs met written keys, want %d: the writer should stop trying", n, upsertAfter)
	}
	if err := w.Write(ctx, batch(0), batchRows(151, 10, 9)); err != nil {
		t.Fatal(err)
	}
	if got := tableRows(t, pool, "scored"); len(got) != 160 || got[160] != 9 {
		t.Fatalf("a new batch through the upsert: %d rows", len(got))
	}
}

// With a ledger (modes create and replace) the table has no key while it is written: a
// batch delivered again, after its first write committed or racing it, finds its ledger
// row and writes nothing, so every key is there once and the primary key can be added.
// Once the ledger is gone (the job finished) a batch is handed back, not failed.
func TestOutputWriterLedger(t *testing.T) {
	pool, _ := testenv.Pool(t)
	ctx := context.Background()
	for _, q := range []string{
		`create table scored_once (id bigint, value real)`,
		`create table "pgtrain_ledger_j-1" (range_no integer, page_no integer, primary key (range_no, page_no))`,
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	plan := regressionPlan("scored_once")
	plan.Prediction.Ledger = "pgtrain_ledger_j-1"
	w, err := NewOutputWriter(pool, plan)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := w.Write(ctx, batch(0), batchRows(1, 100, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if got := tableRows(t, pool, "scored_once"); len(got) != 100 || got[1] != 1 || got[100] != 1 {
		t.Fatalf("after a redelivery: %d rows, want 100 of value 1", len(got))
	}

	// A redelivery racing the first write waits on its uncommitted ledger row.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `insert into "pgtrain_ledger_j-1" values (0, 1)`); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"scored_once"}, []string{"id", "value"}, pgx.CopyFromRows(batchRows(101, 50, 2))); err != nil {
		t.Fatal(err)
	}
	if err := writeWhileHeld(ctx, t, pool, tx, func() error { return w.Write(ctx, batch(1), batchRows(101, 50, 2)) }); err != nil {
		t.Fatalf("the racing write: %v", err)
	}
	// A first write that aborts leaves the batch to the next delivery.
	tx, err = pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `insert into "pgtrain_ledger_j-1" values (0, 2)`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(ctx, batch(2), batchRows(151, 10, 3)); err != nil {
		t.Fatal(err)
	}
	if got := tableRows(t, pool, "scored_once"); len(got) != 160 || got[101] != 2 || got[160] != 3 {
		t.Fatalf("after a racing redelivery and an aborted write: %d rows, want 160", len(got))
	}
	if _, err := pool.Exec(ctx, `alter table scored_once add primary key (id)`); err != nil {
		t.Fatalf("the written table cannot take its primary key: %v", err)
	}

	if _, err := pool.Exec(ctx, `drop table "pgtrain_ledger_j-1"`); err != nil {
		t.Fatal(err)
	}
	err = w.Write(ctx, batch(0), batchRows(1, 100, 1))
	if !errors.Is(err, errLedgerGone) || permanentWriteError(err) {
		t.Fatalf("a batch after the ledger is dropped: %v, want errLedgerGone, not a permanent error", err)
	}
}

// A typed key's text is cast back to the key's types: a timestamptz (written in UTC) and
// a text in an ICU collation, as a composite key. Through the ledger a batch written again
// writes nothing; in mode append it is upserted with its new values; either way each key
// is there once, equal to the source's.
func TestOutputWriterTypedKey(t *testing.T) {
	pool, _ := testenv.Pool(t)
	ctx := context.Background()
	for _, s := range []string{
		`create table ledger_out (at timestamptz, name text collate "en-x-icu", value real)`,
		`create table pgtrain_ledger_j (range_no integer, page_no integer, primary key (range_no, page_no))`,
		`create table append_out (at timestamptz, name text collate "en-x-icu", value real, primary key (at, name))`,
	} {
		if _, err := pool.Exec(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	keyCols := []messages.KeyColumn{
		{Name: "at", Type: "timestamp with time zone", Form: messages.KeyFormTimestamptz},
		{Name: "name", Type: "text"},
	}
	rows := func(value float32) [][]any {
		return [][]any{
			{"2024-03-31 01:30:00.000001", "Ölberg", value},
			{"1999-12-31 23:59:59.999999", "it's; --", value},
		}
	}
	for _, tt := range []struct {
		table, ledger string
		want          float32 // the value after the second write
	}{{"ledger_out", "pgtrain_ledger_j", 1}, {"append_out", "", 2}} {
		plan := regressionPlan(tt.table)
		plan.KeyColumns, plan.Key = keyCols, "at"
		plan.Prediction.Ledger = tt.ledger
		w, err := NewOutputWriter(pool, plan)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(ctx, batch(0), rows(1)); err != nil {
			t.Fatal(err)
		}
		if err := w.Write(ctx, batch(0), rows(2)); err != nil {
			t.Fatalf("%s: a batch written again: %v", tt.table, err)
		}
		var n, matched int64
		err = pool.QueryRow(ctx, `select count(*), count(*) filter (where value = $1 and (
			(at = '2024-03-31 01:30:00.000001+00' and name = 'Ölberg') or (at = '1999-12-31 23:59:59.999999+00' and name = 'it''s; --')))
			from `+tt.table, tt.want).Scan(&n, &matched)
		if err != nil {
			t.Fatal(err)
		}
		if n != 2 || matched != 2 {
			t.Fatalf("%s: %d rows, %d of them the keys written with value %v", tt.table, n, matched, tt.want)
		}
	}
}

// writeWhileHeld runs write while tx holds the rows it needs, waits until write is blocked
// on a lock, then commits tx and returns write's result: a redelivery racing the first write.
func writeWhileHeld(ctx context.Context, t *testing.T, pool *pgxpool.Pool, tx pgx.Tx, write func() error) error {
	t.Helper()
	var wg sync.WaitGroup
	var err error
	wg.Go(func() { err = write() })
	testenv.Eventually(t, time.Minute, "the second write to wait on the first's lock", func() bool {
		var waiting bool
		qerr := pool.QueryRow(ctx, `select exists (select 1 from pg_stat_activity where wait_event_type = 'Lock' and datname = current_database())`).Scan(&waiting)
		return qerr == nil && waiting
	})
	if cerr := tx.Commit(ctx); cerr != nil {
		t.Fatal(cerr)
	}
	wg.Wait()
	return err
}
