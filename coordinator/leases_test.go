package coordinator

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"pgtrain/coordinator/client"
	"pgtrain/internal/testenv"
	"pgtrain/messages"
)

// leaseJob submits the iris job as 10 ranges of 100 rows read in 2 passes (READY is too
// small to replay), on a coordinator with a window of 3.
func leaseJob(t *testing.T) (*env, *running, *messages.Plan) {
	e := newEnv(t)
	irisTable(t, e)
	r := start(t, e, Config{Window: 3, LeaseTTL: time.Second, ReadyMaxBytes: 32 << 10})
	st, err := r.cl.Submit(context.Background(), specJSON(t, func(m map[string]any) { m["range_rows"] = 100 }))
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.cl.Plan(context.Background(), st.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Ranges) != 10 || p.Replay || p.Passes() != 2 {
		t.Fatalf("%d ranges, replay %v", len(p.Ranges), p.Replay)
	}
	return e, r, p
}

func mustLease(t *testing.T, cl *client.Client, worker string) *messages.Lease {
	t.Helper()
	l, err := cl.Lease(context.Background(), worker)
	if err != nil {
		t.Fatal(err)
	}
	if l == nil {
		t.Fatalf("%s got no lease", worker)
	}
	return l
}

func noLease(t *testing.T, cl *client.Client, why string) {
	t.Helper()
	l, err := cl.Lease(context.Background(), "idle")
	if err != nil || l != nil {
		t.Fatalf("%s: lease %+v, %v; want none", why, l, err)
	}
}

func TestLeaseLifecycle(t *testing.T) {
	e, r, p := leaseJob(t)
	ctx := context.Background()
	order := p.EpochOrder(0)

	// Grants follow the trainer's order, up to the window.
	var ls []*messages.Lease
	for i, w := range []string{"w1", "w2", "w3"} {
		l := mustLease(t, r.cl, w)
		if l.JobID != p.JobID || l.Pass != 0 || l.Range.Index != order[i] || l.NextPage != 0 || !reflect.DeepEqual(l.Range, p.Ranges[order[i]]) {
			t.Fatalf("lease %d: %+v, want range %d", i, l, order[i])
		}
		ls = append(ls, l)
	}
	noLease(t, r.cl, "window of 3 full")

	// Renewal extends the lease and records progress; it never moves backwards.
	r.clock.advance(500 * time.Millisecond)
	l, err := r.cl.ReportLease(ctx, ls[0].ID, messages.LeaseProgress{WorkerID: "w1", NextPage: 2, LastKey: 42, Rows: 20})
	if err != nil {
		t.Fatal(err)
	}
	if !l.ExpiresAt.After(ls[0].ExpiresAt) || l.NextPage != 2 || l.LastKey != 42 {
		t.Fatalf("renewed %+v, was %+v", l, ls[0])
	}
	l, err = r.cl.ReportLease(ctx, ls[0].ID, messages.LeaseProgress{WorkerID: "w1", NextPage: 1, LastKey: 7})
	if err != nil || l.NextPage != 2 || l.LastKey != 42 {
		t.Fatalf("backwards report moved the lease: %+v, %v", l, err)
	}
	// Completing is idempotent, and does not move the window: the trainer does.
	for range 2 {
		if _, err := r.cl.ReportLease(ctx, ls[0].ID, messages.LeaseProgress{WorkerID: "w1", NextPage: 3, LastKey: 99, Rows: 30, Done: true}); err != nil {
			t.Fatal(err)
		}
	}
	noLease(t, r.cl, "range done but trainer at 0")
	jobID, err := r.cl.ClaimJob(ctx, "trainer-1")
	if err != nil || jobID != p.JobID {
		t.Fatalf("claim: %q, %v", jobID, err)
	}
	if err := r.cl.ReportTrainer(ctx, p.JobID, messages.TrainerProgress{TrainerID: "trainer-1", Epoch: 0, Consumed: 1, Rows: 100}); err != nil {
		t.Fatal(err)
	}
	l4 := mustLease(t, r.cl, "w4")
	if l4.Range.Index != order[3] {
		t.Fatalf("after the trainer moved: %+v, want range %d", l4, order[3])
	}
	noLease(t, r.cl, "window full again")

	// w2 records progress, then goes silent: its range goes to w5 with that progress.
	if _, err := r.cl.ReportLease(ctx, ls[1].ID, messages.LeaseProgress{WorkerID: "w2", NextPage: 3, LastKey: 77, Rows: 30}); err != nil {
		t.Fatal(err)
	}
	r.clock.advance(900 * time.Millisecond)
	for id, w := range map[string]string{ls[2].ID: "w3", l4.ID: "w4"} { // the others stay alive
		if _, err := r.cl.ReportLease(ctx, id, messages.LeaseProgress{WorkerID: w}); err != nil {
			t.Fatal(err)
		}
	}
	r.clock.advance(200 * time.Millisecond)
	l5 := mustLease(t, r.cl, "w5")
	if l5.Range.Index != order[1] || l5.NextPage != 3 || l5.LastKey != 77 || l5.ID == ls[1].ID {
		t.Fatalf("hand-over: %+v, want range %d from page 3 after key 77", l5, order[1])
	}
	_, err = r.cl.ReportLease(ctx, ls[1].ID, messages.LeaseProgress{WorkerID: "w2", NextPage: 4, LastKey: 88})
	if !errors.Is(err, client.ErrLeaseLost) {
		t.Fatalf("stale holder: %v, want ErrLeaseLost", err)
	}
	// Release hands the range back with its progress.
	if _, err := r.cl.ReportLease(ctx, l5.ID, messages.LeaseProgress{WorkerID: "w5", NextPage: 4, LastKey: 88, Release: true}); err != nil {
		t.Fatal(err)
	}
	l6 := mustLease(t, r.cl, "w6")
	if l6.Range.Index != order[1] || l6.NextPage != 4 || l6.LastKey != 88 {
		t.Fatalf("after release: %+v", l6)
	}
	st, err := r.cl.Job(ctx, p.JobID)
	if err != nil {
		t.Fatal(err)
	}
	if st.Fetch.Expired != 1 || st.Fetch.Released != 1 || st.Fetch.Done != 1 || st.Fetch.Leased != 3 ||
		st.Fetch.Grants != 6 || st.Fetch.Resumed != 2 ||
		st.Fetch.Pending != 20-4 || len(st.Leases) != 3 || st.Trainer.ID != "trainer-1" || st.Trainer.Consumed != 1 {
		t.Fatalf("status %+v", st)
	}
	if err := r.cl.Healthy(ctx); err != nil {
		t.Fatalf("healthy: %v", err)
	}
	if _, err := r.cl.Lease(ctx, ""); err == nil {
		t.Fatal("a lease request without a worker id was accepted")
	}

	// The trainer finishes: the job is done, leases are refused, its batches are purged.
	if _, err := e.bus.JS.Publish(ctx, e.bus.Names().ReadySubject(messages.BatchID{JobID: p.JobID, Pass: 0, Range: 0, Page: 0}), []byte("x")); err != nil {
		t.Fatal(err)
	}
	res := messages.EpochResult{Epoch: 0, Loss: 0.5}
	for range 2 { // a retried result is recorded once
		if err := r.cl.ReportTrainer(ctx, p.JobID, messages.TrainerProgress{TrainerID: "trainer-1", Epoch: 1, Consumed: 0, Result: &res}); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.cl.ReportTrainer(ctx, p.JobID, messages.TrainerProgress{TrainerID: "trainer-1", Epoch: 1, Consumed: 10, Done: true}); err != nil {
		t.Fatal(err)
	}
	st, err = r.cl.Job(ctx, p.JobID)
	if err != nil || st.State != messages.JobDone || st.ModelPath != p.JobID+"/model" || len(st.Results) != 1 {
		t.Fatalf("final status %+v, %v", st, err)
	}
	noLease(t, r.cl, "job done")
	if _, err := r.cl.ReportLease(ctx, l6.ID, messages.LeaseProgress{WorkerID: "w6", NextPage: 5}); !errors.Is(err, client.ErrLeaseLost) {
		t.Fatalf("report on an ended job: %v, want ErrLeaseLost", err)
	}
	testenv.Eventually(t, 10*time.Second, "READY to be purged", func() bool {
		_, err := e.bus.Ready.GetLastMsgForSubject(ctx, e.bus.Names().ReadySubject(messages.BatchID{JobID: p.JobID}))
		return errors.Is(err, jetstream.ErrMsgNotFound)
	})
}

// In the second read pass the window continues from the trainer's global position.
func TestLeaseWindowSpansPasses(t *testing.T) {
	_, r, p := leaseJob(t)
	ctx := context.Background()
	if _, err := r.cl.ClaimJob(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	if err := r.cl.ReportTrainer(ctx, p.JobID, messages.TrainerProgress{TrainerID: "t", Epoch: 0, Consumed: 9}); err != nil {
		t.Fatal(err)
	}
	// Positions 0..8 are behind the trainer but not done: they are granted first.
	for i := range 9 {
		l := mustLease(t, r.cl, "w")
		if l.Pass != 0 || l.Range.Index != p.EpochOrder(0)[i] {
			t.Fatalf("grant %d: %+v", i, l)
		}
	}
	want := []struct{ pass, rng int }{{0, p.EpochOrder(0)[9]}, {1, p.EpochOrder(1)[0]}, {1, p.EpochOrder(1)[1]}}
	for i, w := range want {
		l := mustLease(t, r.cl, "w")
		if l.Pass != w.pass || l.Range.Index != w.rng {
			t.Fatalf("grant %d: pass %d range %d, want pass %d range %d", 9+i, l.Pass, l.Range.Index, w.pass, w.rng)
		}
	}
	noLease(t, r.cl, "trainer at 9 with a window of 3")
}

func TestTrainerClaims(t *testing.T) {
	_, r, p := leaseJob(t)
	ctx := context.Background()
	id, err := r.cl.ClaimJob(ctx, "t1")
	if err != nil || id != p.JobID {
		t.Fatalf("claim: %q, %v", id, err)
	}
	if id, err := r.cl.ClaimJob(ctx, "t2"); err != nil || id != "" {
		t.Fatalf("second trainer got %q, %v; want nothing", id, err)
	}
	if id, err := r.cl.ClaimJob(ctx, "t1"); err != nil || id != p.JobID {
		t.Fatalf("restarted trainer got %q, %v", id, err)
	}
	// t1 goes silent for 3 lease TTLs: t2 takes over and t1's reports are refused.
	r.clock.advance(3*time.Second + time.Millisecond)
	if id, err := r.cl.ClaimJob(ctx, "t2"); err != nil || id != p.JobID {
		t.Fatalf("takeover: %q, %v", id, err)
	}
	err = r.cl.ReportTrainer(ctx, p.JobID, messages.TrainerProgress{TrainerID: "t1", Epoch: 0, Consumed: 2})
	if !errors.Is(err, client.ErrLeaseLost) {
		t.Fatalf("report from the replaced trainer: %v", err)
	}
	// A worker's permanent error fails the job with its reason.
	st, err := r.cl.Job(ctx, p.JobID)
	if err != nil || st.Trainer.ID != "t2" {
		t.Fatalf("status %+v, %v", st, err)
	}
	if err := r.cl.FailJob(ctx, p.JobID, messages.FailRequest{Error: "row 17: column petal is NaN", TrainerID: "t2"}); err != nil {
		t.Fatal(err)
	}
	if err := r.cl.FailJob(ctx, p.JobID, messages.FailRequest{Error: "again", TrainerID: "t2"}); err != nil {
		t.Fatal(err)
	}
	st, err = r.cl.Job(ctx, p.JobID)
	if err != nil || st.State != messages.JobFailed || st.Error != "row 17: column petal is NaN" {
		t.Fatalf("status %+v, %v", st, err)
	}
	if id, err := r.cl.ClaimJob(ctx, "t3"); err != nil || id != "" {
		t.Fatalf("claimed a failed job: %q, %v", id, err)
	}
	if _, err := r.cl.Job(ctx, "nope"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("unknown job: %v", err)
	}
}

// A new coordinator on the same bucket resumes the jobs, the leases and their progress.
func TestRestartResumesFromKV(t *testing.T) {
	e, r, p := leaseJob(t)
	ctx := context.Background()
	l1 := mustLease(t, r.cl, "w1")
	l2 := mustLease(t, r.cl, "w2")
	if _, err := r.cl.ReportLease(ctx, l1.ID, messages.LeaseProgress{WorkerID: "w1", NextPage: 5, LastKey: 500, Rows: 50}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.cl.ReportLease(ctx, l2.ID, messages.LeaseProgress{WorkerID: "w2", NextPage: 1, Done: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.cl.ClaimJob(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	if err := r.cl.ReportTrainer(ctx, p.JobID, messages.TrainerProgress{TrainerID: "t1", Epoch: 0, Consumed: 1}); err != nil {
		t.Fatal(err)
	}
	addr := r.c.Addr()
	r.stop(t)

	// A client call made while the coordinator is down retries until it is back.
	retrying := make(chan struct{})
	cl := client.New("http://"+addr, slog.New(signalHandler{msg: "retrying request", once: new(sync.Once), ch: retrying}))
	type answer struct {
		st  *messages.JobStatus
		err error
	}
	answers := make(chan answer, 1)
	go func() {
		st, err := cl.Job(ctx, p.JobID)
		answers <- answer{st, err}
	}()
	select {
	case <-retrying:
	case a := <-answers:
		t.Fatalf("call to a stopped coordinator returned %+v, %v", a.st, a.err)
	case <-time.After(10 * time.Second):
		t.Fatal("the client did not retry")
	}
	r2 := start(t, e, Config{Listen: addr, Window: 3, LeaseTTL: time.Second, ReadyMaxBytes: 32 << 10})
	a := <-answers
	if a.err != nil || a.st.ID != p.JobID {
		t.Fatalf("call across the restart: %+v, %v", a.st, a.err)
	}
	st, err := r2.cl.Job(ctx, p.JobID)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != messages.JobRunning || st.Fetch.Done != 1 || st.Fetch.Leased != 1 || st.Trainer.ID != "t1" || st.Trainer.Consumed != 1 {
		t.Fatalf("resumed status %+v", st)
	}
	// The holder keeps its lease across the restart.
	l, err := r2.cl.ReportLease(ctx, l1.ID, messages.LeaseProgress{WorkerID: "w1", NextPage: 6, LastKey: 600, Rows: 60})
	if err != nil || l.NextPage != 6 {
		t.Fatalf("renewal after restart: %+v, %v", l, err)
	}
	// New grants continue after the ranges already granted.
	l3 := mustLease(t, r2.cl, "w3")
	if l3.Range.Index != p.EpochOrder(0)[2] {
		t.Fatalf("after restart: %+v, want range %d", l3, p.EpochOrder(0)[2])
	}
	if id, err := r2.cl.ClaimJob(ctx, "t1"); err != nil || id != p.JobID {
		t.Fatalf("trainer reclaim after restart: %q, %v", id, err)
	}
	// The plan is still served.
	if p2, err := r2.cl.Plan(ctx, p.JobID); err != nil || p2.Expected != p.Expected {
		t.Fatalf("plan after restart: %v", err)
	}
}

func TestParseLeaseID(t *testing.T) {
	tests := []struct {
		name    string
		id      string
		wantErr bool
	}{
		{name: "valid", id: leaseID("iris-0a1b", 1, 2, 3)},
		{name: "too few parts", id: "iris.1.2", wantErr: true},
		{name: "negative", id: "iris.1.-2.3", wantErr: true},
		{name: "bad job", id: "Iris.1.2.3", wantErr: true},
		{name: "not a number", id: "iris.a.2.3", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, _, _, ok := parseLeaseID(tt.id)
			if ok == tt.wantErr {
				t.Fatalf("parseLeaseID(%q) ok = %v", tt.id, ok)
			}
		})
	}
}

func FuzzParseLeaseID(f *testing.F) {
	f.Add("iris-0a1b.1.2.3")
	f.Add("..")
	f.Add("a.01.+2.3")
	f.Fuzz(func(t *testing.T, id string) {
		job, pass, r, grant, ok := parseLeaseID(id)
		if !ok {
			return
		}
		if pass < 0 || r < 0 || grant < 0 || messages.ValidJobID(job) != nil {
			t.Fatalf("%q parsed to %q %d %d %d", id, job, pass, r, grant)
		}
		// What parses names the task an issued id would name.
		j2, p2, r2, g2, ok2 := parseLeaseID(leaseID(job, pass, r, grant))
		if !ok2 || j2 != job || p2 != pass || r2 != r || g2 != grant {
			t.Fatalf("%q does not round-trip", id)
		}
	})
}
