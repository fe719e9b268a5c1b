package faults

import (
	"context"
	"fmt"
	"testing"
	"time"

	"pgtrain/internal/demo"
	"pgtrain/internal/metrics/metricstest"
	"pgtrain/messages"
)

// Every role, each its own process, serves /metrics after a real job: the values moved as
// the job did (rows read equal the table's rows), and promtool accepts each answer. The
// scorer's are scraped after a prediction job with the trained model, run once the other
// roles' values are checked so that its reads do not count there.
func TestMetricsOfEveryRole(t *testing.T) {
	ctx := context.Background()
	const tbl, n, epochs = "metrics_events", 6000, 2
	if err := createTable(ctx, tbl, n); err != nil {
		t.Fatal(err)
	}
	c := startCluster(t, clusterOptions{readyMaxBytes: replayMaxBytes, scorers: 1})
	st, err := c.client.Submit(ctx, demo.Job{
		Table: tbl, Key: "id",
		Features: []messages.FeatureSpec{{Column: "a", Scale: "standard"}, {Column: "kind", Encode: "onehot"}},
		Label:    "y", Layers: []demo.Layer{demo.Dense(8, "relu", "h"), demo.Dense(1, "", "out")},
		LearningRate: 0.01, Metrics: []string{"mae"}, Epochs: epochs, BatchSize: 128, Seed: 3,
		RangeRows: 1000, PageRows: 250, ValidationSplit: 0.2,
	}.JSON())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(jobTimeout())
	for st.State != messages.JobDone {
		if st.State == messages.JobFailed || time.Now().After(deadline) {
			t.Fatalf("job %s: %s %s", st.ID, st.State, st.Error)
		}
		time.Sleep(200 * time.Millisecond) // polling interval of a condition with a deadline
		if st, err = c.client.Job(ctx, st.ID); err != nil {
			t.Fatal(err)
		}
	}
	job := map[string]string{"job": st.ID}
	jobSplit := func(split string) map[string]string { return map[string]string{"job": st.ID, "split": split} }
	def := map[string]string{"source": "default"}

	t.Run("coordinator", func(t *testing.T) {
		f := metricstest.Scrape(t, c.coordURL+"/metrics", c.tokens.UserSecret)
		f.Want(t, "pgtrain_coordinator_planning_seconds", def, 1)
		f.Want(t, "pgtrain_job_state", map[string]string{"job": st.ID, "state": "done"}, 1)
		f.Want(t, "pgtrain_job_rows_read_total", job, n) // replayed: one read pass
		f.Want(t, "pgtrain_job_leases_granted_total", job, float64(st.Fetch.Grants))
		f.Want(t, "pgtrain_job_epochs_completed", job, epochs)
		f.WantAbove(t, "pgtrain_job_epoch_loss", jobSplit("validation"), 0)
		f.Want(t, "pgtrain_bus_up", nil, 1)
		f.Want(t, "pgtrain_bus_stream_max_bytes", map[string]string{"stream": "PGTRAIN_READY"}, replayMaxBytes) // READY is purged when the job ends
		f.WantAbove(t, "pgtrain_pgxpool_acquires_total", map[string]string{"role": "coordinator", "source": "default"}, 0)
		f.WantAbove(t, "go_goroutines", nil, 0)
	})
	t.Run("fetcher", func(t *testing.T) {
		var rows, dups float64
		for _, p := range c.fetchers {
			f := metricstest.Scrape(t, "http://"+p.health+"/metrics", "")
			r, _ := f.Value("pgtrain_fetcher_rows_read_total", def)
			d, _ := f.Value("pgtrain_fetcher_duplicate_pages_total", nil)
			rows, dups = rows+r, dups+d
			if r > 0 {
				f.WantAbove(t, "pgtrain_fetcher_read_bytes_total", def, 0)
				f.WantAbove(t, "pgtrain_fetcher_pages_published_total", def, 0)
				f.WantAbove(t, "pgtrain_pgxpool_acquires_total", map[string]string{"role": "fetcher", "source": "default"}, 0)
			}
			// A fetcher that read a range or two may have used less CPU than the kernel's
			// tick (10 ms): 0 seconds. The series is there.
			if _, ok := f.Value("process_cpu_seconds_total", nil); !ok {
				t.Errorf("%s: no process_cpu_seconds_total", p.name)
			}
		}
		// A page published twice (a lease that expired on a loaded machine) is read twice.
		if rows != n && (dups == 0 || rows < n) {
			t.Errorf("the fetchers read %v rows (%v duplicate pages), the table has %d", rows, dups, n)
		}
	})
	t.Run("preprocessor", func(t *testing.T) {
		var rows float64
		for _, p := range c.preprocessors {
			f := metricstest.Scrape(t, "http://"+p.health+"/metrics", "")
			r, ok := f.Value("pgtrain_preprocessor_rows_processed_total", nil)
			if !ok {
				t.Errorf("%s: no pgtrain_preprocessor_rows_processed_total", p.name)
			}
			rows += r
			if _, ok := f.Value("pgtrain_preprocessor_duplicates_dropped_total", nil); !ok {
				t.Errorf("%s: no pgtrain_preprocessor_duplicates_dropped_total", p.name)
			}
		}
		if rows < n {
			t.Errorf("the preprocessors processed %v rows, the table has %d", rows, n)
		}
	})
	t.Run("trainer", func(t *testing.T) {
		f := metricstest.Scrape(t, "http://"+c.trainer.health+"/metrics", "")
		train, _ := f.Value("pgtrain_trainer_rows_total", jobSplit("train"))
		valid, _ := f.Value("pgtrain_trainer_rows_total", jobSplit("validation"))
		if train+valid != n*epochs || valid == 0 {
			t.Errorf("the trainer saw %v training and %v validation rows; want %d in all", train, valid, n*epochs)
		}
		f.Want(t, "pgtrain_trainer_epochs_completed", job, epochs)
		last := st.Results[len(st.Results)-1]
		f.Want(t, "pgtrain_trainer_epoch_loss", jobSplit("train"), last.Loss)
		f.Want(t, "pgtrain_trainer_epoch_loss", jobSplit("validation"), *last.ValLoss)
		f.Want(t, "pgtrain_trainer_epoch_metric", map[string]string{"job": st.ID, "metric": "mae", "split": "validation"}, last.ValMetrics["mae"])
		f.WantAbove(t, "pgtrain_trainer_epoch_rows_per_second", job, 0)
	})
	t.Run("scorer", func(t *testing.T) {
		body := fmt.Sprintf(`{"model": %q, "table": %q, "output": "metrics_scored", "mode": "replace", "range_rows": 1000, "page_rows": 250}`, st.ID, tbl)
		pst, err := c.client.SubmitPrediction(ctx, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(jobTimeout())
		for pst.State != messages.JobDone {
			if pst.State == messages.JobFailed || time.Now().After(deadline) {
				t.Fatalf("prediction job %s: %s %s", pst.ID, pst.State, pst.Error)
			}
			time.Sleep(200 * time.Millisecond) // polling interval of a condition with a deadline
			if pst, err = c.client.Job(ctx, pst.ID); err != nil {
				t.Fatal(err)
			}
		}
		if w := pst.Prediction.Written.Rows; w != n {
			t.Fatalf("prediction job %s wrote %d rows, the table has %d", pst.ID, w, n)
		}
		// The scorer counts a batch after the coordinator has it: the last may lag the job's end.
		var f metricstest.Families
		var rows float64
		for end := time.Now().Add(time.Minute); rows < n && time.Now().Before(end); {
			f = metricstest.Scrape(t, "http://"+c.scorers[0].health+"/metrics", "")
			if rows, _ = f.Value("pgtrain_scorer_rows_written_total", nil); rows < n {
				time.Sleep(50 * time.Millisecond) // polling interval of a condition with a deadline
			}
		}
		redelivered, _ := f.Value("pgtrain_scorer_redeliveries_total", nil)
		// A batch delivered again (an ack wait passed on a loaded machine) is written again.
		if rows != n && (redelivered == 0 || rows < n) {
			t.Errorf("the scorer wrote %v rows (%v redeliveries), the job scored %d", rows, redelivered, n)
		}
		f.WantAbove(t, "pgtrain_scorer_batches_written_total", nil, 0)
		f.Want(t, "pgtrain_scorer_batches_failed_total", nil, 0)
		if _, ok := f.Value("process_cpu_seconds_total", nil); !ok {
			t.Errorf("%s: no process_cpu_seconds_total", c.scorers[0].name)
		}
	})
}
