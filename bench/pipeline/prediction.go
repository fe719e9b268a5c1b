package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"pgtrain/coordinator/client"
	"pgtrain/messages"
)

// predictionResult is one batch prediction of the benchmark table with a trained MLP,
// beside the two COPY rates it is judged against.
type predictionResult struct {
	Model         string `json:"model"`
	Fetchers      int    `json:"fetchers"`
	Preprocessors int    `json:"preprocessors"`
	Scorers       int    `json:"scorers"`
	// Training is the one-epoch MLP job whose model is used; it is not part of the rate.
	Training *e2eResult `json:"training"`
	// Predict runs from sending POST /v1/predictions until the job is done: planning,
	// reading, preprocessing, the forward pass and the writes to the output table.
	Predict rate `json:"predict"`
	// PredictPGCPUSeconds is PostgreSQL's CPU time over the prediction alone (reads and
	// the output's writes).
	PredictPGCPUSeconds float64 `json:"predict_postgres_cpu_seconds"`
	// PlanSeconds is the measured prediction's submission round trip (its planning).
	PlanSeconds float64 `json:"predict_plan_seconds"`
	// Compared are, with --compare-scorer, the same prediction run again with the scorers
	// of that binary and of this one in turn, in the same cluster after the same training.
	Compared []predictRun `json:"compared,omitempty"`
	// Evaluation is the same job without the output table (pgtrain evaluate), with the
	// scorers of the measured run: reading, preprocessing and the forward pass alone, so
	// the difference in PostgreSQL's CPU is what writing the output costs it.
	Evaluation *predictRun `json:"evaluation,omitempty"`
	// CopyFrom is the binary COPY FROM STDIN of as many (key, value) rows into a table shaped
	// like the output, each run in its own process; RowsPerS is their median.
	CopyFrom         []rate  `json:"copy_from_runs"`
	CopyFromRowsPerS float64 `json:"copy_from_rows_per_s"`
	// SlowerCopyRowsPerS is the slower of the binary COPY ceiling (in) and COPY FROM (out).
	SlowerCopyRowsPerS float64            `json:"slower_copy_rows_per_s"`
	PeakRSSMB          map[string]float64 `json:"peak_rss_mb"`
	CPUSeconds         map[string]float64 `json:"cpu_seconds"`
}

// predictRun is one prediction of a comparison: which binary's scorers wrote it, its rate,
// and the CPU PostgreSQL and the scorers spent on it.
type predictRun struct {
	Scorer string `json:"scorer"`
	// WorkersCPUSeconds and NATSCPUSeconds are, when whole builds are compared
	// (--compare-pgtrain), the CPU of the run's own coordinator, fetchers and preprocessors,
	// and of the NATS server over the run.
	WorkersCPUSeconds float64 `json:"workers_cpu_seconds,omitempty"`
	NATSCPUSeconds    float64 `json:"nats_cpu_seconds,omitempty"`
	Predict           rate    `json:"predict"`
	// PlanSeconds is the submission's round trip: the schema checks, the key's ranges and
	// the output table's creation.
	PlanSeconds      float64 `json:"plan_seconds"`
	PGCPUSeconds     float64 `json:"postgres_cpu_seconds"`
	ScorerCPUSeconds float64 `json:"scorer_cpu_seconds"`
}

// runPrediction trains the MLP for one epoch on table, then scores table with that model
// with scorers scorer processes beside the cluster's fetchers and preprocessors.
//
// With compare, the prediction runs four times, this binary's scorers and compare's in
// turn; with whole, the coordinator, the fetchers and the preprocessors are swapped as
// well before every run (the NATS server and PostgreSQL stay), so whole builds compare.
func runPrediction(ctx context.Context, env *harness, table string, rows int64, cfg e2eConfig, scorers int, compare string, whole bool) (*predictionResult, error) {
	dir, err := os.MkdirTemp(env.tmp, "predict-")
	if err != nil {
		return nil, err
	}
	c, err := startCluster(ctx, env, dir, cfg)
	if err != nil {
		return nil, err
	}
	res := &predictionResult{Model: cfg.Model, Fetchers: cfg.Fetchers, Preprocessors: cfg.Preprocessors, Scorers: scorers}
	pgBefore := pgCPUSeconds(env.pg.DataDir)
	runErr := func() error {
		tr, err := measureJob(ctx, c, table, cfg, env.pg.DataDir)
		if err != nil {
			return fmt.Errorf("training: %w", err)
		}
		res.Training = tr
		// The measured run; with a comparison, it is the first of four, alternating binaries.
		bins := []string{env.pgtrain}
		if compare != "" {
			bins = []string{env.pgtrain, compare, env.pgtrain, compare}
		}
		// last is the run whose workers run now: a swap stops them and counts their CPU.
		var last *predictRun
		swap := func(bin, suffix string) error {
			cpu, err := c.swapWorkers(ctx, env, cfg, bin, suffix)
			if last != nil {
				last.WorkersCPUSeconds = cpu
			}
			return err
		}
		runs := make([]predictRun, len(bins))
		for run, bin := range bins {
			if whole {
				if err := swap(bin, fmt.Sprintf("-run%d", run+1)); err != nil {
					return err
				}
			}
			var ps []*proc
			for i := 1; i <= scorers; i++ {
				name := fmt.Sprintf("scorer-%d-%d", run+1, i)
				p, err := startProc(name, filepath.Join(dir, name+".log"), cfg.env(), bin, "scorer", "--id", name,
					"--dsn", env.dsn, "--nats-url", c.natsURL, "--coordinator", c.coordURL)
				if err != nil {
					return err
				}
				ps = append(ps, p)
				c.scorers = append(c.scorers, p)
			}
			natsBefore := procCPUSeconds(c.nats)
			pr, err := measurePrediction(ctx, c, env, table, tr.JobID, rows, true)
			if err != nil {
				return err
			}
			if whole {
				pr.NATSCPUSeconds = procCPUSeconds(c.nats) - natsBefore
			}
			runs[run] = pr
			last = &runs[run]
			if run == 0 {
				if whole {
					if err := swap(bin, "-evaluation"); err != nil {
						return err
					}
					last = nil
				}
				ev, err := measurePrediction(ctx, c, env, table, tr.JobID, rows, false)
				if err != nil {
					return fmt.Errorf("evaluation: %w", err)
				}
				res.Evaluation = &ev
			}
			for _, p := range ps {
				if err := p.stop(30 * time.Second); err != nil {
					return err
				}
				runs[run].ScorerCPUSeconds += p.cpuSeconds()
			}
			if run == 0 {
				res.Predict, res.PredictPGCPUSeconds, res.PlanSeconds = pr.Predict, pr.PGCPUSeconds, pr.PlanSeconds
			}
			runs[run].Scorer = bin
		}
		if whole {
			// The last run's workers: stopped here to count their CPU.
			cpu, err := c.retireWorkers()
			if err != nil {
				return err
			}
			last.WorkersCPUSeconds = cpu
		}
		if compare != "" {
			res.Compared = runs
		}
		return nil
	}()
	stopErr := c.stop()
	pgAfter := settledPGCPU(env.pg.DataDir)
	if runErr != nil {
		return nil, fmt.Errorf("prediction with %s: %w (logs in %s)", cfg, runErr, dir)
	}
	if stopErr != nil {
		return nil, fmt.Errorf("prediction with %s: stopping: %w", cfg, stopErr)
	}
	res.PeakRSSMB = map[string]float64{}
	res.CPUSeconds = map[string]float64{"postgres": pgAfter - pgBefore}
	for _, p := range c.all() {
		role := p.name
		switch {
		case p == c.trainer:
		case strings.HasPrefix(p.name, "fetcher-"):
			role = "fetcher"
		case strings.HasPrefix(p.name, "preprocessor-"):
			role = "preprocessor"
		case containsProc(c.scorers, p):
			role = "scorer"
		}
		res.PeakRSSMB[role] = max(res.PeakRSSMB[role], p.peakRSSMB())
		res.CPUSeconds[role] += p.cpuSeconds()
	}
	if !env.keep {
		os.RemoveAll(dir)
	}
	return res, nil
}

func containsProc(ps []*proc, p *proc) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// measurePrediction submits the prediction of table with the model of job model, follows
// it to its end and checks that the output table holds every row once. Without output it
// is an evaluation, which writes nothing and must have scored every row.
func measurePrediction(ctx context.Context, c *cluster, env *harness, table, model string, rows int64, output bool) (predictRun, error) {
	var res predictRun
	cl := client.New(c.coordURL, slog.New(slog.DiscardHandler))
	out := table + "_scores"
	spec := fmt.Sprintf(`{"model": %q, "table": %q, "output": %q, "mode": "replace", "evaluate": false}`, model, table, out)
	if !output {
		spec = fmt.Sprintf(`{"model": %q, "table": %q, "evaluate": true}`, model, table)
	}
	if err := settle(ctx, env.pool); err != nil {
		return res, err
	}
	pgBefore := pgCPUSeconds(env.pg.DataDir)
	sent := time.Now()
	st, err := cl.SubmitPrediction(ctx, []byte(spec))
	if err != nil {
		return res, fmt.Errorf("submitting the prediction: %w", err)
	}
	res.PlanSeconds = time.Since(sent).Seconds()
	// The trainer has exited after its one job, and the scorers of earlier runs are
	// stopped; every other role must stay up.
	var watch []*proc
	for _, p := range c.all() {
		if p != c.trainer && !p.exited() {
			watch = append(watch, p)
		}
	}
	var final *messages.JobStatus
	err = waitFor(ctx, 30*time.Minute, "the prediction to end", watch, func() bool {
		s, err := cl.Job(ctx, st.ID)
		if err != nil {
			return false
		}
		if s.State == messages.JobDone || s.State == messages.JobFailed {
			final = s
			return true
		}
		return false
	})
	if err != nil {
		return res, err
	}
	seconds := time.Since(sent).Seconds()
	res.PGCPUSeconds = pgCPUSeconds(env.pg.DataDir) - pgBefore
	if final.State != messages.JobDone {
		return res, fmt.Errorf("prediction job %s %s: %s", final.ID, final.State, final.Error)
	}
	res.Predict = newRate(rows, seconds, 0)
	if !output {
		if final.Prediction.Written.Rows != rows || final.Prediction.Loss == nil {
			return res, fmt.Errorf("evaluation job %s scored %d rows (loss %v), the table has %d", final.ID, final.Prediction.Written.Rows, final.Prediction.Loss, rows)
		}
		return res, nil
	}
	var n int64
	if err := env.pool.QueryRow(ctx, "select count(*) from "+pgx.Identifier{out}.Sanitize()).Scan(&n); err != nil {
		return res, err
	}
	if n != rows {
		return res, fmt.Errorf("the output table %s has %d rows, the scored table %d", out, n, rows)
	}
	return res, dropTable(ctx, env.pool, out)
}

// copyFromOut is the writing side's ceiling: binary COPY FROM STDIN of as many rows as table
// has into a fresh table shaped like a regression's prediction output (the key as primary
// key, a real value). Only the COPY is timed; the table is dropped afterwards.
func copyFromOut(ctx context.Context, conn *pgx.Conn, table string) (baselineOutput, error) {
	var n int64
	if err := conn.QueryRow(ctx, "select count(*) from "+pgx.Identifier{table}.Sanitize()).Scan(&n); err != nil {
		return baselineOutput{}, err
	}
	out := pgx.Identifier{table + "_copy_out"}
	if _, err := conn.Exec(ctx, fmt.Sprintf("drop table if exists %s; create table %s (id bigint primary key, value real)",
		out.Sanitize(), out.Sanitize())); err != nil {
		return baselineOutput{}, err
	}
	var i int64
	row := make([]any, 2)
	start := time.Now()
	copied, err := conn.CopyFrom(ctx, out, []string{"id", "value"}, pgx.CopyFromFunc(func() ([]any, error) {
		if i == n {
			return nil, nil
		}
		i++
		row[0], row[1] = i, float32(i%1000)/1000
		return row, nil
	}))
	if err != nil {
		return baselineOutput{}, err
	}
	seconds := time.Since(start).Seconds()
	if _, err := conn.Exec(ctx, "drop table "+out.Sanitize()); err != nil {
		return baselineOutput{}, err
	}
	return baselineOutput{Rows: copied, Seconds: seconds}, nil
}
