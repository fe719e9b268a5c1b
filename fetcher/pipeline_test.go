package fetcher_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"pgtrain/coordinator"
	"pgtrain/coordinator/client"
	"pgtrain/fetcher"
	"pgtrain/internal/bus"
	"pgtrain/internal/testenv"
	"pgtrain/messages"
	"pgtrain/preprocessor"
)

// The real pipeline up to READY: the coordinator plans and leases; one fetcher is stopped
// and hands its lease back, another crashes mid-range after publishing a page it did not
// record; two more fetchers and two preprocessors finish the job. READY then holds every row exactly once, and the key checksum equals the plan's.
func TestPipelineToReady(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	pool, _ := testenv.Pool(t)
	nc, err := bus.Connect(testenv.NATS(t), "pipeline-test", log)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	b, err := bus.Ensure(ctx, nc, bus.Limits{ReadyMaxBytes: 256 << 20})
	if err != nil {
		t.Fatal(err)
	}
	const rows = 6000
	if _, err := pool.Exec(ctx, `CREATE TABLE points (id bigint PRIMARY KEY, a float8, b real, city text, y float8)`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO points SELECT i*3, CASE WHEN i % 50 = 0 THEN NULL ELSE sin(i) END, i % 11,
			(array['oslo','rome','lima'])[i % 3 + 1], cos(i) FROM generate_series(1, $1) i`, rows); err != nil {
		t.Fatal(err)
	}
	sources := map[string]*pgxpool.Pool{"": pool}
	co, err := coordinator.New(ctx, coordinator.Config{Listen: "127.0.0.1:0", Window: 100, LeaseTTL: time.Second,
		ReadyMaxBytes: 256 << 20}, sources, b, log)
	if err != nil {
		t.Fatal(err)
	}
	cctx, stopCo := context.WithCancel(ctx)
	coDone := make(chan error, 1)
	go func() { coDone <- co.Run(cctx) }()
	defer func() { stopCo(); <-coDone }()
	select {
	case <-co.Ready():
	case err := <-coDone:
		t.Fatal(err)
	case <-time.After(10 * time.Second):
		t.Fatal("coordinator not listening")
	}
	cl := client.New("http://"+co.Addr(), log)
	spec, _ := json.Marshal(map[string]any{
		"table": "points", "key": "id",
		"features": []any{
			map[string]any{"column": "a", "scale": "standard", "impute": "mean"},
			map[string]any{"column": "b", "scale": "minmax"},
			map[string]any{"column": "city", "encode": "onehot"},
		},
		"label": "y", "loss": "mse", "epochs": 1, "range_rows": 1000, "page_rows": 150,
		"model": json.RawMessage(`{"layers": [{"type": "dense", "units": 1}]}`),
	})
	st, err := cl.Submit(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := bus.GetPlan(ctx, b.State, st.ID)
	if err != nil {
		t.Fatal(err)
	}

	type role struct {
		cancel context.CancelFunc
		done   chan error
	}
	run := func(r interface{ Run(context.Context) error }) role {
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- r.Run(rctx) }()
		return role{cancel, done}
	}
	stop := func(r role) {
		r.cancel()
		if err := <-r.done; err != nil {
			t.Errorf("Run returned %v", err)
		}
	}
	newFetcher := func(id string) *fetcher.Fetcher {
		f, err := fetcher.New(fetcher.Config{WorkerID: id, Poll: 20 * time.Millisecond}, sources, b, cl, log)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	// The first fetcher blocks on a locked table and is stopped: it hands its lease back.
	lockConn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lockTx, err := lockConn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockTx.Exec(ctx, "LOCK TABLE points IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	first := newFetcher("first")
	r1 := run(first)
	testenv.Eventually(t, 20*time.Second, "the first fetcher waiting on the lock", func() bool {
		var n int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'SELECT%points%'`).Scan(&n)
		return err == nil && n > 0
	})
	stop(r1)
	lockTx.Rollback(ctx)
	lockConn.Release()
	if s := first.Stats(); s.Released != 1 || s.Pages != 0 {
		t.Fatalf("first fetcher stats %+v: want its lease handed back, nothing published", s)
	}

	// A fetcher that crashes: it publishes pages 0 to 2 of a range, records only pages 0 and
	// 1 on its lease, and disappears. Its lease expires and the next holder resumes at page 2.
	crashed, err := cl.Lease(ctx, "crashed")
	if err != nil || crashed == nil {
		t.Fatalf("lease: %v %v", crashed, err)
	}
	reader, err := fetcher.NewRangeReader(pool, plan, int(nc.MaxPayload())-fetcher.DefaultPayloadHeadroom)
	if err != nil {
		t.Fatal(err)
	}
	last := crashed.LastKey
	for page := crashed.NextPage; page < crashed.NextPage+3; page++ {
		pg, err := reader.ReadPage(ctx, crashed.Pass, crashed.Range, page, last, nil)
		if err != nil {
			t.Fatal(err)
		}
		id := pg.Batch.BatchID
		if _, err := b.JS.Publish(ctx, b.Names().RawSubject(id), pg.Data, jetstream.WithMsgID(id.MsgID())); err != nil {
			t.Fatal(err)
		}
		if page < crashed.NextPage+2 {
			if _, err := cl.ReportLease(ctx, crashed.ID, messages.LeaseProgress{WorkerID: "crashed",
				NextPage: page + 1, LastKey: pg.LastKey, Rows: int64(pg.Batch.Rows())}); err != nil {
				t.Fatal(err)
			}
		}
		last = pg.LastKey
	}

	var roles []role
	var fetchers []*fetcher.Fetcher
	for _, id := range []string{"second", "third"} {
		f := newFetcher(id)
		fetchers = append(fetchers, f)
		roles = append(roles, run(f))
	}
	var pps []*preprocessor.Preprocessor
	for range 2 {
		p, err := preprocessor.New(preprocessor.Config{}, b, cl, log)
		if err != nil {
			t.Fatal(err)
		}
		pps = append(pps, p)
		roles = append(roles, run(p))
	}
	testenv.Eventually(t, 60*time.Second, "every range fetched and RAW empty", func() bool {
		s, err := cl.Job(ctx, st.ID)
		if err != nil || s.State == messages.JobFailed {
			t.Fatalf("job: %v %+v", err, s)
		}
		info, err := b.Raw.Info(ctx)
		return err == nil && s.Fetch.Done == len(plan.Ranges) && info.State.Msgs == 0
	})
	for _, r := range roles {
		stop(r)
	}

	// Read READY by subject, range by range and page by page, as the trainer does.
	var seen messages.KeyChecksum
	keys := map[int64]bool{}
	for _, kr := range plan.Ranges {
		for page := 0; ; page++ {
			id := messages.BatchID{JobID: plan.JobID, Pass: 0, Range: kr.Index, Page: page}
			m, err := b.Ready.GetLastMsgForSubject(ctx, b.Names().ReadySubject(id))
			if err != nil {
				t.Fatalf("batch %s: %v", id, err)
			}
			rb, err := messages.DecodeReady(m.Data)
			if err != nil {
				t.Fatal(err)
			}
			if rb.InputDim != plan.InputDim || len(rb.X) != rb.Rows()*plan.InputDim {
				t.Fatalf("batch %s: %d×%d features", id, rb.Rows(), rb.InputDim)
			}
			for _, k := range rb.Keys {
				if keys[k] || k < kr.Lo || k > kr.Hi {
					t.Fatalf("key %d twice or outside range %d", k, kr.Index)
				}
				keys[k] = true
				seen.Add(k)
			}
			if rb.Last {
				break
			}
		}
	}
	want := plan.Expected
	want.Merge(plan.ExpectedValid)
	if seen != want || seen.Rows != rows {
		t.Fatalf("READY checksum %+v, plan says %+v (%d rows)", seen, want, rows)
	}
	info, err := b.Ready.Info(ctx, jetstream.WithSubjectFilter(b.Names().ReadyJobSubjects(plan.JobID)))
	if err != nil {
		t.Fatal(err)
	}
	var processed, dups int64
	for _, p := range pps {
		processed += p.Stats().Processed
		dups += p.Stats().Duplicates
	}
	if uint64(len(info.State.Subjects)) != info.State.Msgs || int64(info.State.Msgs) != processed-dups {
		t.Fatalf("READY has %d messages on %d subjects; preprocessors stored %d (%d duplicates)",
			info.State.Msgs, len(info.State.Subjects), processed, dups)
	}
	// Page 2 of the crashed range was published twice; nothing else was.
	var fetchDups int64
	for _, f := range fetchers {
		fetchDups += f.Stats().Duplicates
	}
	if fetchDups != 1 {
		t.Fatalf("fetchers published %d duplicates, want 1 (the crashed holder's unrecorded page)", fetchDups)
	}
}
