package coordinator

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"pgtrain/internal/testenv"
	"pgtrain/messages"
)

// joinSnapshot counts the table's rows as seen by the exported snapshot, the way a fetcher
// joins it.
func joinSnapshot(ctx context.Context, e *env, snap string) (int64, error) {
	tx, err := e.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "set transaction snapshot '"+snap+"'"); err != nil {
		return 0, err
	}
	var n int64
	err = tx.QueryRow(ctx, "select count(*) from iris").Scan(&n)
	return n, err
}

func TestSnapshotPlanIgnoresLaterInserts(t *testing.T) {
	e := newEnv(t)
	irisTable(t, e)
	// READY too small to replay: both epochs read PostgreSQL, both through the snapshot.
	r := start(t, e, Config{ReadyMaxBytes: 32 << 10})
	ctx := context.Background()
	st, err := r.cl.Submit(ctx, specJSON(t, func(m map[string]any) {
		m["consistency"] = "snapshot"
		m["range_rows"] = 250
	}))
	if err != nil {
		t.Fatal(err)
	}
	// Rows written after planning, inside and beyond the planned key span.
	e.exec(t, `insert into iris (id, sepal, petal, city, species) select i, 1, 1, 'oslo', 'setosa' from generate_series(1001, 1500) i`)
	e.exec(t, `delete from iris where id <= 100`)
	p, err := r.cl.Plan(ctx, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	if p.Snapshot == "" || p.Expected.Rows+p.ExpectedValid.Rows != 1000 {
		t.Fatalf("snapshot %q, expected %+v + %+v, want 1000 rows", p.Snapshot, p.Expected, p.ExpectedValid)
	}
	var sum int64
	for _, rg := range p.Ranges {
		sum += rg.Rows
	}
	if sum != 1000 {
		t.Fatalf("ranges hold %d rows, want the snapshot's 1000", sum)
	}
	var now int64
	if err := e.pool.QueryRow(ctx, "select count(*) from iris").Scan(&now); err != nil || now != 1400 {
		t.Fatalf("table now has %d rows (%v), want 1400", now, err)
	}
	// A fetcher joining the snapshot sees exactly the planned rows.
	if n, err := joinSnapshot(ctx, e, p.Snapshot); err != nil || n != 1000 {
		t.Fatalf("joined snapshot sees %d rows (%v), want 1000", n, err)
	}
	if p.Replay || p.Passes() != 2 {
		t.Fatalf("replay %v, %d passes", p.Replay, p.Passes())
	}
	// READY holds only a couple of ranges, so the trainer's reports move the window along.
	if id, err := r.cl.ClaimJob(ctx, "t"); err != nil || id != st.ID {
		t.Fatalf("claim: %q, %v", id, err)
	}
	readPass := func(pass int) {
		for i := range p.Ranges {
			l, err := r.cl.Lease(ctx, "w")
			if err != nil || l == nil || l.Pass != pass {
				t.Fatalf("lease in pass %d: %+v, %v", pass, l, err)
			}
			if _, err := r.cl.ReportLease(ctx, l.ID, messages.LeaseProgress{WorkerID: "w", NextPage: 1, Done: true}); err != nil {
				t.Fatal(err)
			}
			if err := r.cl.ReportTrainer(ctx, st.ID, messages.TrainerProgress{TrainerID: "t", Epoch: pass, Consumed: i + 1}); err != nil {
				t.Fatal(err)
			}
		}
	}
	readPass(0)
	// The second pass joins the snapshot too, so it is still held.
	r.c.mu.Lock()
	held := r.c.jobs[st.ID].snap != nil
	r.c.mu.Unlock()
	if n, err := joinSnapshot(ctx, e, p.Snapshot); !held || err != nil || n != 1000 {
		t.Fatalf("after pass 0: held %v, joined snapshot sees %d rows (%v)", held, n, err)
	}
	readPass(1)
	testenv.Eventually(t, 10*time.Second, "the snapshot to be released", func() bool {
		_, err := joinSnapshot(ctx, e, p.Snapshot)
		return err != nil
	})
}
