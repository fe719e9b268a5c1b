package faults

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"pgtrain/internal/faultpoint"
	"pgtrain/messages"
)

// predictionRows is the scored table's size: enough pages that a fault lands mid-job.
const predictionRows = 60_000

// Prediction jobs under faults: a scorer killed (kill -9) after writing a batch and before
// acknowledging it, a fetcher killed mid-range, and the coordinator killed mid-job and
// restarted. Each writes every key exactly once, with the values of a clean run, and
// leaves RAW, SCORE and READY empty.
func TestPredictionFaults(t *testing.T) {
	ctx := context.Background()
	for _, s := range []struct {
		name string
		rows int
	}{{"pred_train", 5000}, {"pred_events", predictionRows}} {
		if err := createTable(ctx, s.name, s.rows); err != nil {
			t.Fatal(err)
		}
	}
	c := startCluster(t, clusterOptions{
		readyMaxBytes: replayMaxBytes,
		scorers:       2,
		// The first scorer dies after its 5th committed batch, before reporting it.
		scorerEnv: map[int][]string{0: {faultEnv(faultpoint.ScorerAfterWrite, 5)}},
	})
	model := trainForPrediction(t, c)
	want, err := sqlChecksum(ctx, "pred_events", -1<<63, 1<<63-1)
	if err != nil {
		t.Fatal(err)
	}

	// Scorer killed after a write: its batch is delivered again and written again.
	r := c.predict(t, model, "pred_scored_scorer_kill")
	if err := waitFaultPoint(r, c.scorers[0], faultpoint.ScorerAfterWrite, 5, true); err != nil {
		t.Fatal(err)
	}
	c.finishPrediction(t, r, want)
	if n := countLogs(c.scorers, "page delivered again"); n < 1 {
		t.Errorf("no scorer got the killed scorer's batch again (%d redeliveries logged)", n)
	}

	// Fetcher killed mid-range: another resumes the range after the last recorded page.
	r = c.predict(t, model, "pred_scored_fetcher_kill")
	killed, err := killMidRange(r, c.fetchers[0], syscall.SIGKILL)
	if err != nil {
		t.Fatal(err)
	}
	st := c.finishPrediction(t, r, want)
	if st.Fetch.Expired < 1 || !resumedAt(c, killed) {
		t.Errorf("fetch %+v: want the killed fetcher's lease %s expired and resumed at page %d or later", st.Fetch, killed.ID, killed.NextPage)
	}

	// Coordinator killed mid-prediction and restarted on the same address: the job, its
	// leases and its scored ranges come back from the state bucket; the workers' retries
	// ride it out, and batches written meanwhile are reported once it answers.
	r = c.predict(t, model, "pred_scored_coordinator_kill")
	before, err := r.waitStatus("a tenth of the rows written", jobTimeout(), func(st *messages.JobStatus) bool {
		return st.Prediction.Written.Rows >= predictionRows/10
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.coordinator.kill(); err != nil {
		t.Fatal(err)
	}
	if err := c.restart(c.coordinator); err != nil {
		t.Fatal(err)
	}
	after, err := c.status(r.jobID)
	if err != nil {
		t.Fatal(err)
	}
	if after.Prediction.Written.Rows < before.Prediction.Written.Rows || after.Prediction.RangesScored < before.Prediction.RangesScored {
		t.Fatalf("the restarted coordinator went back: %+v before the kill, %+v after", before.Prediction, after.Prediction)
	}
	c.finishPrediction(t, r, want)
	if n := countLogs([]*proc{c.coordinator}, "resumed jobs from the state bucket"); n != 1 {
		t.Errorf("the restarted coordinator logged %d resumptions from KV, want 1", n)
	}

	// The clean run, and every run's output the same.
	c.finishPrediction(t, c.predict(t, model, "pred_scored_clean"), want)
	for _, out := range []string{"pred_scored_scorer_kill", "pred_scored_fetcher_kill", "pred_scored_coordinator_kill"} {
		var n int64
		err := pool.QueryRow(ctx, fmt.Sprintf(`select count(*) from (
			(select * from %[1]s except all select * from pred_scored_clean)
			union all (select * from pred_scored_clean except all select * from %[1]s)) d`, pgx.Identifier{out}.Sanitize())).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%s differs from the clean run in %d rows", out, n)
		}
	}
	testBusEmpty(t, c)
}

// trainForPrediction trains the scenarios' job on pred_train and returns the model's id.
func trainForPrediction(t *testing.T, c *cluster) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), jobTimeout())
	defer cancel()
	st, err := c.client.Submit(ctx, jobSpec("pred_train", ""))
	if err != nil {
		t.Fatal(err)
	}
	r := &runCtx{c: c, jobID: st.ID, done: make(chan struct{})}
	final, err := r.waitStatus("the training job to end", jobTimeout(), func(*messages.JobStatus) bool { return false })
	if final == nil || final.State != messages.JobDone {
		t.Fatalf("training job %s: %+v (%v)", st.ID, final, err)
	}
	return st.ID
}

// predict starts a prediction of pred_events into out.
func (c *cluster) predict(t *testing.T, model, out string) *runCtx {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	body := fmt.Sprintf(`{"model": %q, "table": "pred_events", "output": %q, "range_rows": 6000, "page_rows": 300}`, model, out)
	st, err := c.client.SubmitPrediction(ctx, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return &runCtx{c: c, jobID: st.ID, done: make(chan struct{})}
}

// finishPrediction waits for the job to end and checks it wrote every key once: its own
// count and checksum, and the output table's, are the scored table's.
func (c *cluster) finishPrediction(t *testing.T, r *runCtx, want messages.KeyChecksum) *messages.JobStatus {
	t.Helper()
	st, _ := r.waitStatus("the prediction job to end", jobTimeout(), func(*messages.JobStatus) bool { return false })
	close(r.done)
	if st == nil || st.State != messages.JobDone {
		t.Fatalf("prediction job %s: %+v", r.jobID, st)
	}
	p := st.Prediction
	if p.Written != want {
		t.Fatalf("job %s wrote keys %+v, the table has %+v", r.jobID, p.Written, want)
	}
	out := p.Output[len("public."):]
	got, err := sqlChecksum(context.Background(), out, -1<<63, 1<<63-1)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("%s holds keys %+v, the scored table %+v", out, got, want)
	}
	// Written without its key, the table is keyed when the job finishes, and the job's
	// ledger is gone.
	var keyed, ledger bool
	err = pool.QueryRow(context.Background(), `select exists (select 1 from pg_index where indrelid = $1::regclass and indisprimary),
		to_regclass($2) is not null`, pgx.Identifier{out}.Sanitize(), pgx.Identifier{"pgtrain_ledger_" + r.jobID}.Sanitize()).Scan(&keyed, &ledger)
	if err != nil || !keyed || ledger {
		t.Fatalf("%s has its primary key: %v; the job's ledger is there: %v (%v)", out, keyed, ledger, err)
	}
	return st
}

// testBusEmpty waits for RAW, SCORE and READY to be empty: every ended job's batches are gone.
func testBusEmpty(t *testing.T, c *cluster) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		b, err := c.bus()
		if err == nil && b.Raw.Messages == 0 && b.Score.Messages == 0 && b.Ready.Messages == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("RAW, SCORE and READY not empty a minute after the last job ended: %+v (%v)", b, err)
		}
		time.Sleep(50 * time.Millisecond) // polling interval of a condition with a deadline
	}
}
