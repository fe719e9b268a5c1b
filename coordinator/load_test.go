package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"pgtrain/coordinator/client"
	"pgtrain/messages"
)

// A job whose state cannot be loaded does not stop the coordinator from starting: it is
// failed with the reason, for good, and the other jobs carry on.
func TestUnloadableJobsFailAtStart(t *testing.T) {
	e := newEnv(t)
	irisTable(t, e)
	cfg := Config{Window: 3, LeaseTTL: time.Second, ReadyMaxBytes: 32 << 10}
	r := start(t, e, cfg)
	ctx := context.Background()
	good, err := r.cl.Submit(ctx, specJSON(t, func(m map[string]any) { m["range_rows"] = 100 }))
	if err != nil {
		t.Fatal(err)
	}
	r.stop(t)

	kv := e.bus.StateKV()
	running, _ := json.Marshal(jobRecord{ID: "noplan-1", State: messages.JobRunning, CreatedAt: time.Now()})
	badPlan, _ := json.Marshal(jobRecord{ID: "badplan-1", State: messages.JobRunning, CreatedAt: time.Now()})
	for key, value := range map[string][]byte{
		"job.corrupt-1":  []byte(`{"id": 12, "state": `),
		"job.noplan-1":   running,
		"job.badplan-1":  badPlan,
		"plan.badplan-1": {0xc1, 0xff, 0x00, 0x7f},
	} {
		if _, err := kv.Put(ctx, key, value); err != nil {
			t.Fatal(err)
		}
	}
	for restart := range 2 { // and the next start finds them failed, not unloadable
		r := start(t, e, cfg)
		if err := r.cl.Healthy(ctx); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"corrupt-1", "noplan-1", "badplan-1"} {
			st, err := r.cl.Job(ctx, id)
			if err != nil || st.State != messages.JobFailed || !strings.Contains(st.Error, "cannot load the job") {
				t.Fatalf("start %d: job %s: %+v, %v; want failed, saying why", restart, id, st, err)
			}
			if _, err := r.cl.Plan(ctx, id); !errors.Is(err, client.ErrNotFound) {
				t.Fatalf("plan of %s: %v, want not found", id, err)
			}
		}
		st, err := r.cl.Job(ctx, good.ID)
		if err != nil || st.State != messages.JobRunning {
			t.Fatalf("start %d: the good job: %+v, %v", restart, st, err)
		}
		if l := mustLease(t, r.cl, "w"); l.JobID != good.ID {
			t.Fatalf("lease %+v, want one of %s", l, good.ID)
		}
		r.stop(t)
	}
	var rec jobRecord
	if _, ok, err := (store{kv: kv}).get(ctx, jobKey("corrupt-1"), &rec); err != nil || !ok || rec.State != messages.JobFailed {
		t.Fatalf("the corrupt record now: %+v, %v", rec, err)
	}
}

// Job state follows the lease window, not epochs × ranges: a job of 50 million epochs costs
// what a job of two does, in memory and in GET /v1/jobs, and loads again after a restart.
func TestManyEpochsStaySmall(t *testing.T) {
	e := newEnv(t)
	irisTable(t, e)
	// The epochs limit would refuse this job at submit; the state must stay small without it.
	cfg := Config{Window: 3, LeaseTTL: time.Second, ReadyMaxBytes: 32 << 10, Limits: Limits{Epochs: 1 << 30}}
	r := start(t, e, cfg)
	ctx := context.Background()
	before := heapInUse()
	const epochs = 50_000_000
	st, err := r.cl.Submit(ctx, specJSON(t, func(m map[string]any) { m["range_rows"] = 100; m["epochs"] = epochs }))
	if err != nil {
		t.Fatal(err)
	}
	if st.Replay || st.Ranges != 10 {
		t.Fatalf("job %+v: want 10 ranges read in every epoch", st)
	}
	l := mustLease(t, r.cl, "w")
	took := time.Now()
	jobs, err := r.cl.Jobs(ctx)
	took2 := time.Since(took)
	if err != nil || len(jobs) != 1 || jobs[0].Fetch.Pending != epochs*10-1 || jobs[0].Fetch.Leased != 1 {
		t.Fatalf("jobs %+v, %v", jobs, err)
	}
	grown := heapInUse() - before
	t.Logf("%d epochs: heap grew %.1f MB; GET /v1/jobs took %s", epochs, float64(grown)/(1<<20), took2)
	if grown > 32<<20 {
		t.Fatalf("the heap grew %.1f MB for one job", float64(grown)/(1<<20))
	}
	r.stop(t)
	r = start(t, e, cfg)
	got, err := r.cl.Job(ctx, st.ID)
	if err != nil || got.State != messages.JobRunning || len(got.Leases) != 1 || got.Leases[0].ID != l.ID {
		t.Fatalf("after a restart: %+v, %v", got, err)
	}
}

func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// A pass whose ranges are all done leaves memory; its counters stay in the status, and a
// retried completion of one of its leases is still answered from KV.
func TestDonePassesAreFolded(t *testing.T) {
	_, r, p := leaseJob(t)
	ctx := context.Background()
	if _, err := r.cl.ClaimJob(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	var first *messages.Lease
	for i := range len(p.Ranges) {
		if err := r.cl.ReportTrainer(ctx, p.JobID, messages.TrainerProgress{TrainerID: "t", Epoch: 0, Consumed: i}); err != nil {
			t.Fatal(err)
		}
		l := mustLease(t, r.cl, "w")
		if l.Pass != 0 {
			t.Fatalf("grant %d: %+v, want pass 0", i, l)
		}
		if _, err := r.cl.ReportLease(ctx, l.ID, messages.LeaseProgress{WorkerID: "w", NextPage: 2, Rows: 100, Done: true}); err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = l
		}
	}
	r.c.mu.Lock()
	_, resident := r.c.jobs[p.JobID].passes[0]
	r.c.mu.Unlock()
	if resident {
		t.Fatal("pass 0 is done but still in memory")
	}
	st, err := r.cl.Job(ctx, p.JobID)
	if err != nil || st.Fetch.Done != 10 || st.Fetch.Grants != 10 || st.Fetch.RowsRead != 1000 || st.Fetch.Pending != 10 {
		t.Fatalf("status %+v, %v", st.Fetch, err)
	}
	l, err := r.cl.ReportLease(ctx, first.ID, messages.LeaseProgress{WorkerID: "w", NextPage: 2, Rows: 100, Done: true})
	if err != nil || l.ID != first.ID || l.NextPage != 2 {
		t.Fatalf("retried completion of a folded pass: %+v, %v", l, err)
	}
	if _, err := r.cl.ReportLease(ctx, first.ID, messages.LeaseProgress{WorkerID: "evil", Done: true}); !errors.Is(err, client.ErrLeaseLost) {
		t.Fatalf("completion by another worker of a folded pass: %v", err)
	}
}
