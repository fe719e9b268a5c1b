package coordinator

import (
	"context"
	"testing"
	"time"

	"pgtrain/internal/metrics/metricstest"
	"pgtrain/messages"
)

// A planned job, a completed lease, an expired one taken over mid-range and a trainer's
// epoch report: the coordinator's real /metrics shows each, and promtool accepts it.
func TestMetricsAfterRealWork(t *testing.T) {
	_, r, p := leaseJob(t)
	ctx := context.Background()
	done := mustLease(t, r.cl, "w1")
	if _, err := r.cl.ReportLease(ctx, done.ID, messages.LeaseProgress{WorkerID: "w1", NextPage: 2, LastKey: done.Range.Hi, Rows: 100, Done: true}); err != nil {
		t.Fatal(err)
	}
	stuck := mustLease(t, r.cl, "w2")
	if _, err := r.cl.ReportLease(ctx, stuck.ID, messages.LeaseProgress{WorkerID: "w2", NextPage: 1, LastKey: stuck.Range.Lo + 40, Rows: 40}); err != nil {
		t.Fatal(err)
	}
	r.clock.advance(2 * time.Second) // past the 1 s lease TTL
	var resumed *messages.Lease
	for range 3 { // the expired range is granted again, to whichever ask comes first
		if l := mustLease(t, r.cl, "w3"); l.Range.Index == stuck.Range.Index {
			resumed = l
			break
		}
	}
	if resumed == nil || resumed.NextPage != 1 {
		t.Fatalf("the expired range was not resumed: %+v", resumed)
	}
	if id, err := r.cl.ClaimJob(ctx, "t1"); err != nil || id != p.JobID {
		t.Fatalf("claim: %q, %v", id, err)
	}
	valLoss := 0.75
	if err := r.cl.ReportTrainer(ctx, p.JobID, messages.TrainerProgress{TrainerID: "t1", Epoch: 1, Rows: 10,
		Result: &messages.EpochResult{Epoch: 0, Loss: 0.5, Metrics: map[string]float64{"accuracy": 0.8},
			ValLoss: &valLoss, ValMetrics: map[string]float64{"accuracy": 0.7}}}); err != nil {
		t.Fatal(err)
	}

	st, err := r.cl.Job(ctx, p.JobID)
	if err != nil {
		t.Fatal(err)
	}
	f := metricstest.Scrape(t, "http://"+r.c.Addr()+"/metrics", "")
	job := map[string]string{"job": p.JobID}
	with := func(k, v string) map[string]string { return map[string]string{"job": p.JobID, k: v} }
	f.Want(t, "pgtrain_coordinator_planning_seconds", map[string]string{"source": "default"}, 1)
	f.Want(t, "pgtrain_job_state", with("state", "running"), 1)
	f.Want(t, "pgtrain_job_rows", job, 1000)
	f.Want(t, "pgtrain_job_rows_read_total", job, float64(st.Fetch.RowsRead))
	f.WantAbove(t, "pgtrain_job_rows_read_total", job, 100)
	f.Want(t, "pgtrain_job_leases_granted_total", job, float64(st.Fetch.Grants))
	f.Want(t, "pgtrain_job_leases_expired_total", job, 1)
	f.Want(t, "pgtrain_job_leases_resumed_total", job, 1)
	f.Want(t, "pgtrain_job_ranges", with("state", "done"), 1)
	f.Want(t, "pgtrain_job_epochs_completed", job, 1)
	f.Want(t, "pgtrain_job_epoch_loss", with("split", "train"), 0.5)
	f.Want(t, "pgtrain_job_epoch_loss", with("split", "validation"), 0.75)
	f.Want(t, "pgtrain_job_epoch_metric", map[string]string{"job": p.JobID, "metric": "accuracy", "split": "validation"}, 0.7)
	f.Want(t, "pgtrain_bus_up", nil, 1)
	f.Want(t, "pgtrain_bus_stream_max_bytes", map[string]string{"stream": r.c.names.ReadyStream()}, 64<<20) // as newEnv declared it
	f.WantAbove(t, "pgtrain_pgxpool_acquires_total", map[string]string{"role": "coordinator", "source": "default"}, 0)
	f.WantAbove(t, "go_goroutines", nil, 0)
	f.WantAbove(t, "process_resident_memory_bytes", nil, 0)
}
