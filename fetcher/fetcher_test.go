package fetcher

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/coordinator/client"
	"pgtrain/internal/bus"
	"pgtrain/internal/devenv"
	"pgtrain/internal/pgutil"
	"pgtrain/internal/testenv"
	"pgtrain/messages"
)

// leaseTable is an in-memory stand-in for the coordinator's lease API (grant, renew with
// progress, complete, release, expire), so that the fetcher's loop can be driven
// step by step. PostgreSQL and JetStream are real.
type leaseTable struct {
	mu      sync.Mutex
	jobID   string
	ranges  []messages.KeyRange
	st      []rangeState
	seq     int
	ttl     time.Duration
	failed  []string
	reports []report
	// lose, when it returns true, takes the lease back instead of recording the report.
	lose func(r int, p messages.LeaseProgress) bool
}

type rangeState struct {
	holder  string // lease id, "" when free
	done    bool
	next    int
	lastKey int64
	rows    int64
}

type report struct {
	rng int
	p   messages.LeaseProgress
}

func newLeaseTable(jobID string, ranges []messages.KeyRange) *leaseTable {
	return &leaseTable{jobID: jobID, ranges: ranges, st: make([]rangeState, len(ranges)), ttl: time.Minute}
}

func (l *leaseTable) Lease(ctx context.Context, worker string) (*messages.Lease, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.failed) > 0 {
		return nil, nil
	}
	for i := range l.st {
		s := &l.st[i]
		if s.done || s.holder != "" {
			continue
		}
		l.seq++
		s.holder = fmt.Sprintf("lease-%d", l.seq)
		return &messages.Lease{Version: 1, ID: s.holder, JobID: l.jobID, Range: l.ranges[i],
			NextPage: s.next, LastKey: s.lastKey, Rows: s.rows, ExpiresAt: time.Now().Add(l.ttl)}, nil
	}
	return nil, nil
}

func (l *leaseTable) ReportLease(ctx context.Context, id string, p messages.LeaseProgress) (*messages.Lease, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range l.st {
		s := &l.st[i]
		if s.holder != id {
			continue
		}
		l.reports = append(l.reports, report{rng: i, p: p})
		if l.lose != nil && l.lose(i, p) {
			s.holder = ""
			return nil, fmt.Errorf("POST /v1/leases/%s: expired: %w", id, client.ErrLeaseLost)
		}
		if p.NextPage > s.next {
			s.next, s.lastKey, s.rows = p.NextPage, p.LastKey, p.Rows
		}
		switch {
		case p.Done:
			s.done, s.holder = true, ""
		case p.Release:
			s.holder = ""
		}
		return &messages.Lease{ID: id, JobID: l.jobID, Range: l.ranges[i], NextPage: s.next, LastKey: s.lastKey,
			ExpiresAt: time.Now().Add(l.ttl)}, nil
	}
	return nil, fmt.Errorf("POST /v1/leases/%s: unknown lease: %w", id, client.ErrLeaseLost)
}

func (l *leaseTable) FailJob(ctx context.Context, jobID string, req messages.FailRequest) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failed = append(l.failed, req.Error)
	return nil
}

func (l *leaseTable) allDone() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.st {
		if !s.done {
			return false
		}
	}
	return true
}

func (l *leaseTable) snapshot() ([]report, []string, []rangeState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]report(nil), l.reports...), append([]string(nil), l.failed...), append([]rangeState(nil), l.st...)
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func testBus(t testing.TB) *bus.Bus {
	t.Helper()
	nc, err := bus.Connect(testenv.NATS(t), "fetcher-test", testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	b, err := bus.Ensure(context.Background(), nc, bus.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fetchTable creates t(id int8, f0..f<nf-1> float8 with NULLs, cat text, y float8) with
// keys 1..rows, and a plan splitting it into nranges ranges.
func fetchTable(t testing.TB, pool *pgxpool.Pool, jobID string, rows, nf, nranges, pageRows int) *messages.Plan {
	t.Helper()
	ctx := context.Background()
	cols, sel := "", ""
	plan := &messages.Plan{JobID: jobID, Schema: "public", Table: "t", Key: "id", PageRows: pageRows,
		Label: messages.ColumnPlan{Name: "y", Kind: messages.KindNumeric}, LabelDim: 1}
	for i := 0; i < nf; i++ {
		cols += fmt.Sprintf(", f%d float8", i)
		sel += fmt.Sprintf(", CASE WHEN (i+%d) %% 53 = 0 THEN NULL ELSE random() END", i)
		plan.Features = append(plan.Features, messages.ColumnPlan{Name: fmt.Sprintf("f%d", i), Kind: messages.KindNumeric})
	}
	plan.Features = append(plan.Features, messages.ColumnPlan{Name: "cat", Kind: messages.KindCategorical, Vocabulary: []string{"c0", "c1"}})
	plan.InputDim = nf + 3
	if _, err := pool.Exec(ctx, "CREATE TABLE t (id int8 PRIMARY KEY"+cols+", cat text, y float8)"); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "INSERT INTO t SELECT i"+sel+", 'c' || (i % 7), i * 0.5 FROM generate_series(1, $1) i", rows); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "VACUUM ANALYZE t"); err != nil {
		t.Fatal(err)
	}
	step := int64(rows / nranges)
	for r := 0; r < nranges; r++ {
		kr := messages.KeyRange{Index: r, Lo: int64(r)*step + 1, Hi: int64(r+1) * step}
		if r == 0 {
			kr.Lo = math.MinInt64
		}
		if r == nranges-1 {
			kr.Hi = math.MaxInt64
		}
		plan.Ranges = append(plan.Ranges, kr)
	}
	return plan
}

// rawPages reads every message in RAW, by sequence, keyed by batch id.
func rawPages(t testing.TB, b *bus.Bus) map[messages.BatchID][]byte {
	t.Helper()
	ctx := context.Background()
	info, err := b.Raw.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[messages.BatchID][]byte{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := b.Raw.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("seq %d: %v", seq, err)
		}
		rb, err := messages.DecodeRaw(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject != b.Names().RawSubject(rb.BatchID) {
			t.Fatalf("batch %v on subject %s", rb.BatchID, m.Subject)
		}
		if _, dup := out[rb.BatchID]; dup {
			t.Fatalf("batch %v is in RAW twice", rb.BatchID)
		}
		out[rb.BatchID] = m.Data
	}
	return out
}

// checkRaw compares RAW with the pages a RangeReader produces for every range.
func checkRaw(t testing.TB, b *bus.Bus, pool *pgxpool.Pool, plan *messages.Plan, wantRows int) {
	t.Helper()
	got := rawPages(t, b)
	r, err := NewRangeReader(pool, plan, int(b.NC.MaxPayload())-DefaultPayloadHeadroom)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int64]bool{}
	want := 0
	for _, kr := range plan.Ranges {
		last := int64(0)
		for p := 0; ; p++ {
			pg, err := r.ReadPage(context.Background(), 0, kr, p, last, nil)
			if err != nil {
				t.Fatal(err)
			}
			want++
			data, ok := got[pg.Batch.BatchID]
			if !ok {
				t.Fatalf("page %v is not in RAW", pg.Batch.BatchID)
			}
			if !bytes.Equal(data, pg.Data) {
				t.Fatalf("page %v in RAW differs from a fresh read", pg.Batch.BatchID)
			}
			for _, k := range pg.Batch.Keys {
				if seen[k] {
					t.Fatalf("key %d twice", k)
				}
				seen[k] = true
			}
			if pg.Batch.Last {
				break
			}
			last = pg.LastKey
		}
	}
	if len(got) != want || len(seen) != wantRows {
		t.Fatalf("RAW holds %d pages (want %d) with %d rows (want %d)", len(got), want, len(seen), wantRows)
	}
}

func startFetcher(t testing.TB, cfg Config, pool *pgxpool.Pool, b *bus.Bus, c Coordinator) (*Fetcher, context.CancelFunc, chan error) {
	t.Helper()
	f, err := New(cfg, map[string]*pgxpool.Pool{"": pool}, b, c, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return f, cancel, done
}

func waitRun(t testing.TB, done chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v, want nil on shutdown", err)
		}
		done <- nil // for the cleanup
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestFetcherPublishesEveryPageOnce(t *testing.T) {
	pool, _ := testenv.Pool(t)
	b := testBus(t)
	plan := fetchTable(t, pool, "job-a", 3000, 3, 5, 97)
	if err := bus.PutPlan(context.Background(), b.State, plan); err != nil {
		t.Fatal(err)
	}
	lt := newLeaseTable(plan.JobID, plan.Ranges)
	cfg := Config{Poll: 20 * time.Millisecond}
	f1, cancel1, done1 := startFetcher(t, Config{WorkerID: "f1", Poll: cfg.Poll}, pool, b, lt)
	f2, cancel2, done2 := startFetcher(t, Config{WorkerID: "f2", Poll: cfg.Poll}, pool, b, lt)
	testenv.Eventually(t, 30*time.Second, "every range done", lt.allDone)
	cancel1()
	cancel2()
	waitRun(t, done1)
	waitRun(t, done2)
	checkRaw(t, b, pool, plan, 3000)
	s1, s2 := f1.Stats(), f2.Stats()
	if s1.Ranges+s2.Ranges != 5 || s1.Rows+s2.Rows != 3000 || s1.Duplicates+s2.Duplicates != 0 {
		t.Fatalf("stats %+v and %+v, want 5 ranges and 3000 rows between them, no duplicates", s1, s2)
	}
	reports, _, _ := lt.snapshot()
	for _, r := range reports {
		if r.p.WorkerID != "f1" && r.p.WorkerID != "f2" {
			t.Fatalf("report from worker %q", r.p.WorkerID)
		}
	}
}

// A lease lost after page 2 is published but before the report stops the range at once; its
// next holder resumes after page 1 and re-publishes page 2, which the stream drops.
func TestFetcherLostLeaseResumesWithoutDuplicates(t *testing.T) {
	pool, _ := testenv.Pool(t)
	b := testBus(t)
	plan := fetchTable(t, pool, "job-b", 1000, 2, 2, 50)
	if err := bus.PutPlan(context.Background(), b.State, plan); err != nil {
		t.Fatal(err)
	}
	lt := newLeaseTable(plan.JobID, plan.Ranges)
	lost := false
	lt.lose = func(r int, p messages.LeaseProgress) bool {
		if r == 0 && p.NextPage == 3 && !lost {
			lost = true
			return true
		}
		return false
	}
	f, cancel, done := startFetcher(t, Config{Poll: 20 * time.Millisecond}, pool, b, lt)
	testenv.Eventually(t, 30*time.Second, "every range done", lt.allDone)
	cancel()
	waitRun(t, done)
	checkRaw(t, b, pool, plan, 1000)
	s := f.Stats()
	if s.LeasesLost != 1 || s.Duplicates != 1 || s.Ranges != 2 {
		t.Fatalf("stats %+v: want 1 lease lost, exactly 1 duplicate page (nothing published after the loss), 2 ranges", s)
	}
	reports, _, _ := lt.snapshot()
	var resumed bool
	for i, r := range reports {
		if r.rng == 0 && r.p.NextPage == 3 && i+1 < len(reports) && reports[i+1].p.NextPage == 3 && !resumed {
			resumed = true // the report after the loss is the next holder's page 2
		}
	}
	if !resumed {
		t.Fatalf("reports %+v: want range 0 resumed at page 2", reports)
	}
	for _, r := range reports {
		if r.p.Done && r.p.Rows != 500 {
			t.Fatalf("range %d done with %d rows, want 500 counted over both holders", r.rng, r.p.Rows)
		}
	}
}

// waitLocked waits until a query on t waits for a lock.
func waitLocked(t testing.TB, pool *pgxpool.Pool) {
	testenv.Eventually(t, 20*time.Second, "a fetcher query waiting on the table lock", func() bool {
		var n int
		err := pool.QueryRow(context.Background(),
			`SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'SELECT%FROM "public"."t"%'`).Scan(&n)
		return err == nil && n > 0
	})
}

func lockTable(t testing.TB, pool *pgxpool.Pool) func() {
	t.Helper()
	ctx := context.Background()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE t IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	return func() {
		tx.Rollback(ctx)
		conn.Release()
	}
}

// A fetcher blocked in a page keeps its lease alive; cancelled, it returns nil and hands
// the lease back with the progress it was given (resumed mid-range here).
func TestFetcherHeartbeatsAndReleasesOnShutdown(t *testing.T) {
	pool, _ := testenv.Pool(t)
	b := testBus(t)
	plan := fetchTable(t, pool, "job-c", 400, 1, 1, 50)
	if err := bus.PutPlan(context.Background(), b.State, plan); err != nil {
		t.Fatal(err)
	}
	lt := newLeaseTable(plan.JobID, plan.Ranges)
	lt.st[0].next, lt.st[0].lastKey = 2, 100
	unlock := lockTable(t, pool)
	defer unlock()
	_, cancel, done := startFetcher(t, Config{Poll: 20 * time.Millisecond, HeartbeatEvery: 50 * time.Millisecond}, pool, b, lt)
	waitLocked(t, pool)
	testenv.Eventually(t, 10*time.Second, "two heartbeats while the page is blocked", func() bool {
		r, _, _ := lt.snapshot()
		return len(r) >= 2
	})
	cancel()
	waitRun(t, done)
	reports, _, st := lt.snapshot()
	for _, r := range reports[:len(reports)-1] {
		if r.p.NextPage != 2 || r.p.LastKey != 100 || r.p.Done || r.p.Release {
			t.Fatalf("heartbeat %+v, want NextPage 2 after key 100", r.p)
		}
	}
	last := reports[len(reports)-1].p
	if !last.Release || last.NextPage != 2 || last.LastKey != 100 {
		t.Fatalf("last report %+v, want a release at page 2 after key 100", last)
	}
	if st[0].holder != "" || st[0].done {
		t.Fatalf("range state %+v, want free and not done", st[0])
	}
	if n := len(rawPages(t, b)); n != 0 {
		t.Fatalf("RAW holds %d pages, want none", n)
	}
}

// A PostgreSQL restart in the middle of a page read is retried: same page, same key.
func TestFetcherRetriesAcrossPostgresRestart(t *testing.T) {
	if os.Getenv("PGTRAIN_TEST_DSN") != "" {
		t.Skip("restarts a throwaway server; not with PGTRAIN_TEST_DSN")
	}
	ctx := context.Background()
	pg, err := devenv.StartPostgres(ctx, devenv.PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Stop()
	pool, err := pgutil.NewPool(ctx, pg.DSN, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	b := testBus(t)
	plan := fetchTable(t, pool, "job-d", 2000, 2, 2, 100)
	if err := bus.PutPlan(ctx, b.State, plan); err != nil {
		t.Fatal(err)
	}
	lt := newLeaseTable(plan.JobID, plan.Ranges)
	unlock := lockTable(t, pool)
	f, cancel, done := startFetcher(t, Config{Poll: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond}, pool, b, lt)
	waitLocked(t, pool)
	if err := pg.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	unlock() // its connection died with the server
	testenv.Eventually(t, 30*time.Second, "every range done after the restart", lt.allDone)
	cancel()
	waitRun(t, done)
	if s := f.Stats(); s.ReadRetries < 1 || s.Rows != 2000 {
		t.Fatalf("stats %+v: want at least one read retry and 2000 rows", s)
	}
	checkRaw(t, b, pool, plan, 2000)
}

func TestFetcherFailsJobOnBadRow(t *testing.T) {
	pool, _ := testenv.Pool(t)
	b := testBus(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE TABLE t (id int8 PRIMARY KEY, x text, y float8);
		INSERT INTO t SELECT i, i::text, i FROM generate_series(1, 100) i; UPDATE t SET x = 'n/a' WHERE id = 77`); err != nil {
		t.Fatal(err)
	}
	plan := &messages.Plan{JobID: "job-e", Table: "t", Key: "id", PageRows: 10, InputDim: 1, LabelDim: 1,
		Features: []messages.ColumnPlan{{Name: "x", Kind: messages.KindNumeric}},
		Label:    messages.ColumnPlan{Name: "y", Kind: messages.KindNumeric},
		Ranges:   []messages.KeyRange{{Index: 0, Lo: math.MinInt64, Hi: math.MaxInt64}}}
	if err := bus.PutPlan(ctx, b.State, plan); err != nil {
		t.Fatal(err)
	}
	lt := newLeaseTable(plan.JobID, plan.Ranges)
	f, cancel, done := startFetcher(t, Config{Poll: 20 * time.Millisecond}, pool, b, lt)
	testenv.Eventually(t, 20*time.Second, "the job failed", func() bool {
		_, failed, _ := lt.snapshot()
		return len(failed) > 0
	})
	cancel()
	waitRun(t, done)
	_, failed, _ := lt.snapshot()
	// Which page fails depends on the query plan (the cast may run before the sort).
	if !strings.Contains(failed[0], "fetching range 0 page ") || !strings.Contains(failed[0], `"n/a"`) {
		t.Fatalf("reason %q, want it to name the range, the page and the bad value", failed[0])
	}
	if s := f.Stats(); s.JobsFailed != 1 || s.Pages > 7 || s.ReadRetries != 0 {
		t.Fatalf("stats %+v: want 1 failed job, at most 7 pages, no retries", s)
	}
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"defaults", Config{}, ""},
		{"negative poll", Config{Poll: -1}, "poll must be positive"},
		{"retry bounds", Config{RetryMin: time.Second, RetryMax: time.Millisecond}, "retry_max"},
		{"read ahead", Config{ReadAhead: 100}, "read_ahead"},
		{"headroom", Config{PayloadHeadroom: 10}, "payload_headroom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.cfg.WithDefaults()
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if c.WorkerID == "" || c.Poll != DefaultPoll || c.HeartbeatEvery != DefaultHeartbeatEvery {
					t.Fatalf("defaults not applied: %+v", c)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// With NATS down, publishes fail and are retried with the same message id; after the server
// comes back, RAW holds every page once.
func TestFetcherRetriesPublishAcrossNATSRestart(t *testing.T) {
	pool, _ := testenv.Pool(t)
	ns, err := devenv.StartNATS(devenv.NATSOptions{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Stop()
	nc, err := bus.Connect(ns.URL, "fetcher-test", testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()
	b, err := bus.Ensure(ctx, nc, bus.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	plan := fetchTable(t, pool, "job-n", 1000, 2, 2, 100)
	if err := bus.PutPlan(ctx, b.State, plan); err != nil {
		t.Fatal(err)
	}
	lt := newLeaseTable(plan.JobID, plan.Ranges)
	unlock := lockTable(t, pool)
	f, cancel, done := startFetcher(t, Config{Poll: 20 * time.Millisecond, PublishTimeout: 300 * time.Millisecond,
		RetryMax: 200 * time.Millisecond}, pool, b, lt)
	waitLocked(t, pool)
	ns.Server.Shutdown()
	ns.Server.WaitForShutdown()
	unlock()
	testenv.Eventually(t, 20*time.Second, "a publish retried while NATS is down", func() bool { return f.Stats().PublishRetries > 0 })
	if err := ns.Restart(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "every range done after the restart", lt.allDone)
	cancel()
	waitRun(t, done)
	checkRaw(t, b, pool, plan, 1000)
}
