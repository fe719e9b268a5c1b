package trainer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/coordinator"
	"pgtrain/coordinator/client"
	"pgtrain/internal/bus"
	"pgtrain/internal/testenv"
	"pgtrain/messages"
)

// TestTrainerWithTheRealCoordinator runs a job end to end against the coordinator and a real
// PostgreSQL table: the coordinator plans it (ranges, and the key checksums SQL computes),
// the test plays the fetchers and preprocessors by publishing READY batches for the
// planned ranges, and the trainer claims, trains, reports and finishes it through the HTTP
// API.
func TestTrainerWithTheRealCoordinator(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	const rows = 150
	pool, _ := testenv.Pool(t)
	b := testBus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if _, err := pool.Exec(ctx, `create table samples (id bigint primary key, a real, b real, c real, y real)`); err != nil {
		t.Fatal(err)
	}
	var values []string
	for i := 0; i < rows; i++ {
		k := keyOf(i)
		x, y := row(k)
		values = append(values, fmt.Sprintf("(%d, %g, %g, %g, %g)", k, x[0], x[1], x[2], y))
	}
	if _, err := pool.Exec(ctx, `insert into samples values `+strings.Join(values, ",")); err != nil {
		t.Fatal(err)
	}

	co, err := coordinator.New(context.Background(), coordinator.Config{Listen: "127.0.0.1:0", ReadyMaxBytes: 64 << 20},
		map[string]*pgxpool.Pool{"": pool}, b, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	cctx, stopCo := context.WithCancel(ctx)
	coDone := make(chan error, 1)
	go func() { coDone <- co.Run(cctx) }()
	defer func() {
		stopCo()
		if err := <-coDone; err != nil {
			t.Errorf("coordinator: %v", err)
		}
	}()
	select {
	case <-co.Ready():
	case err := <-coDone:
		t.Fatalf("coordinator stopped: %v", err)
	}
	cl := client.New("http://"+co.Addr(), testLog(t))

	spec := fmt.Sprintf(`{"table": "samples", "key": "id", "features": [{"column": "a"}, {"column": "b"}, {"column": "c"}],
		"label": "y", "model": %s, "loss": "mse", "metrics": ["mae"], "optimizer": {"name": "adam", "learning_rate": 0.01},
		"epochs": 2, "batch_size": 16, "seed": 11, "validation_split": 0.2, "range_rows": 30, "page_rows": 7}`, testModel)
	submit := func(t *testing.T) (string, *messages.Plan, []*messages.ReadyBatch) {
		t.Helper()
		st, err := cl.Submit(ctx, []byte(spec))
		if err != nil {
			t.Fatal(err)
		}
		var plan *messages.Plan
		testenv.Eventually(t, 30*time.Second, "the job's plan", func() bool {
			plan, err = bus.GetPlan(ctx, b.State, st.ID)
			return err == nil
		})
		if plan.Expected.Rows+plan.ExpectedValid.Rows != rows || plan.ValidationRanges < 1 || plan.TrainingRanges() < 2 {
			t.Fatalf("plan: %d+%d rows expected, %d ranges of which %d validate",
				plan.Expected.Rows, plan.ExpectedValid.Rows, len(plan.Ranges), plan.ValidationRanges)
		}
		return st.ID, plan, readyFor(plan, rows)
	}

	t.Run("trains to the end", func(t *testing.T) {
		id, plan, batches := submit(t)
		wait := publishShuffled(t, b, batches, 5)
		out := t.TempDir()
		if err := trainOnce(t, ctx, b, cl, Config{TrainerID: "it-trainer", OutDir: out}, nil); err != nil {
			t.Fatal(err)
		}
		if err := wait(); err != nil {
			t.Fatal(err)
		}
		final, err := cl.Job(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if final.State != messages.JobDone || final.ModelPath != id+"/model" {
			t.Fatalf("job %s: state %s, model %q, error %q", id, final.State, final.ModelPath, final.Error)
		}
		if len(final.Results) != 2 {
			t.Fatalf("%d epoch results at the coordinator, want 2", len(final.Results))
		}
		for _, r := range final.Results {
			if r.Seen != plan.Expected || r.SeenValid != plan.ExpectedValid || r.ValLoss == nil {
				t.Fatalf("epoch %d: saw %+v/%+v, SQL says %+v/%+v", r.Epoch, r.Seen, r.SeenValid, plan.Expected, plan.ExpectedValid)
			}
		}
		if final.Trainer.ID != "it-trainer" {
			t.Fatalf("trainer %+v", final.Trainer)
		}
	})

	t.Run("stops when the job is failed elsewhere", func(t *testing.T) {
		id, plan, batches := submit(t)
		// Hold back the last page of the epoch's second range: the trainer consumes one
		// range, then waits, sending heartbeats.
		hold := plan.EpochOrder(0)[1]
		for _, rb := range batches {
			if rb.Pass == 0 && rb.Range == hold && rb.Last {
				continue
			}
			if err := publish(ctx, b, rb); err != nil {
				t.Fatal(err)
			}
		}
		errc := make(chan error, 1)
		go func() {
			errc <- trainOnce(t, ctx, b, cl, Config{TrainerID: "it-trainer-2", OutDir: t.TempDir(), Heartbeat: 50 * time.Millisecond}, nil)
		}()
		var seen time.Time
		testenv.Eventually(t, 20*time.Second, "the trainer waiting after one range", func() bool {
			st, err := cl.Job(ctx, id)
			if err != nil || st.Trainer.Consumed != 1 {
				return false
			}
			seen = st.Trainer.SeenAt
			return true
		})
		testenv.Eventually(t, 20*time.Second, "a heartbeat", func() bool {
			st, err := cl.Job(ctx, id)
			return err == nil && st.Trainer.SeenAt.After(seen) && st.Trainer.Consumed == 1
		})
		// As a fetcher would: with a lease on one of the job's ranges.
		l, err := cl.Lease(ctx, "it-fetcher")
		if err != nil || l == nil || l.JobID != id {
			t.Fatalf("lease: %+v, %v", l, err)
		}
		if err := cl.FailJob(ctx, id, messages.FailRequest{Error: "failed by the test", WorkerID: "it-fetcher", LeaseID: l.ID}); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-errc:
			if !errors.Is(err, ErrJobGone) {
				t.Fatalf("Run: err = %v, want ErrJobGone", err)
			}
		case <-ctx.Done():
			t.Fatal("the trainer kept the failed job")
		}
		st, err := cl.Job(ctx, id)
		if err != nil || st.State != messages.JobFailed || st.Error != "failed by the test" {
			t.Fatalf("job %+v, %v", st, err)
		}
	})
}

// readyFor builds what the preprocessors would publish for a plan over the test rows: every
// page of every planned range in every read pass.
func readyFor(plan *messages.Plan, rows int) []*messages.ReadyBatch {
	var batches []*messages.ReadyBatch
	for pass := 0; pass < plan.Passes(); pass++ {
		for _, kr := range plan.Ranges {
			var keys []int64
			for i := 0; i < rows; i++ {
				if k := keyOf(i); k >= kr.Lo && k <= kr.Hi {
					keys = append(keys, k)
				}
			}
			for page := 0; page == 0 || page*plan.PageRows < len(keys); page++ {
				rb := &messages.ReadyBatch{BatchID: messages.BatchID{JobID: plan.JobID, Pass: pass, Range: kr.Index, Page: page},
					InputDim: plan.InputDim, LabelDim: plan.LabelDim, Last: (page+1)*plan.PageRows >= len(keys)}
				for _, k := range keys[page*plan.PageRows : min((page+1)*plan.PageRows, len(keys))] {
					x, y := row(k)
					rb.Keys, rb.X, rb.Y = append(rb.Keys, k), append(rb.X, x[:]...), append(rb.Y, y)
				}
				batches = append(batches, rb)
			}
		}
	}
	return batches
}
