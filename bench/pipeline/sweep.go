package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"time"

	"pgtrain/coordinator/client"
	"pgtrain/messages"
)

// sweepVariant is one variant of the benchmark sweep: its entry in the spec's sweep, and
// the same change made to a standalone job's spec.
type sweepVariant struct {
	entry string
	alone func(spec map[string]any)
}

// sweepVariants are four variants of the MLP job: the job itself, another learning rate,
// smaller layers, another optimizer.
var sweepVariants = []sweepVariant{
	{entry: `{}`, alone: func(map[string]any) {}},
	{entry: `{"learning_rate": 0.003}`, alone: func(s map[string]any) {
		s["optimizer"] = map[string]any{"name": "adam", "learning_rate": 0.003}
	}},
	{entry: `{"units": [32, 32, 1]}`, alone: func(s map[string]any) {
		s["model"] = json.RawMessage(`{"layers": [{"type": "dense", "units": 32, "activation": "relu"},
			{"type": "dense", "units": 32, "activation": "relu"}, {"type": "dense", "units": 1}]}`)
	}},
	{entry: `{"optimizer": {"name": "sgd", "learning_rate": 0.01, "momentum": 0.9}}`, alone: func(s map[string]any) {
		s["optimizer"] = map[string]any{"name": "sgd", "learning_rate": 0.01, "momentum": 0.9}
	}},
}

// sweepResult is section 7: one sweep of the variants against the same variants as
// separate jobs, submitted together, in one cluster with a trainer per variant.
type sweepResult struct {
	e2eConfig
	Variants int `json:"variants"`
	Trainers int `json:"trainers"`
	// Sweep is the one sweep job, Separate the jobs of its variants.
	Sweep    sweepRun `json:"sweep"`
	Separate sweepRun `json:"separate_jobs"`
	// SameLoss says every variant's last loss in the sweep equals its separate job's, bit
	// for bit (the weights are the same).
	SameLoss bool `json:"same_loss"`
}

// sweepRun is one side of the comparison.
type sweepRun struct {
	JobIDs []string `json:"job_ids"`
	// RowsRead is what the fetchers read from PostgreSQL, over every job of the side.
	RowsRead     int64     `json:"rows_read"`
	WallSeconds  float64   `json:"wall_seconds"`
	PGCPUSeconds float64   `json:"postgres_cpu_seconds"`
	LastLoss     []float64 `json:"last_loss"`
}

// runSweepBench runs the sweep, then the separate jobs, in one cluster of cfg with one
// `pgtrain trainer` process per variant.
func runSweepBench(ctx context.Context, env *harness, table string, rows int64, cfg e2eConfig) (*sweepResult, error) {
	dir, err := os.MkdirTemp(env.tmp, "sweep-")
	if err != nil {
		return nil, err
	}
	c, err := startCluster(ctx, env, dir, cfg)
	if err != nil {
		return nil, err
	}
	res := &sweepResult{e2eConfig: cfg, Variants: len(sweepVariants), Trainers: cfg.Trainers}
	runErr := func() error {
		base := map[string]any{}
		if err := json.Unmarshal(jobSpec(table, cfg.Model, cfg.Epochs), &base); err != nil {
			return err
		}
		var entries []json.RawMessage
		var alone [][]byte
		for _, v := range sweepVariants {
			entries = append(entries, json.RawMessage(v.entry))
			s := map[string]any{}
			for k, x := range base {
				s[k] = x
			}
			v.alone(s)
			b, err := json.Marshal(s)
			if err != nil {
				return err
			}
			alone = append(alone, b)
		}
		sweep := map[string]any{"sweep": entries}
		for k, x := range base {
			sweep[k] = x
		}
		sb, err := json.Marshal(sweep)
		if err != nil {
			return err
		}
		if res.Sweep, err = measureJobs(ctx, c, env, rows, [][]byte{sb}); err != nil {
			return fmt.Errorf("the sweep: %w", err)
		}
		if res.Separate, err = measureJobs(ctx, c, env, rows, alone); err != nil {
			return fmt.Errorf("the separate jobs: %w", err)
		}
		res.SameLoss = len(res.Sweep.LastLoss) == len(res.Separate.LastLoss)
		for i := range res.Sweep.LastLoss {
			res.SameLoss = res.SameLoss && res.Sweep.LastLoss[i] == res.Separate.LastLoss[i]
		}
		return nil
	}()
	stopErr := c.stop()
	if runErr != nil {
		return nil, fmt.Errorf("sweep with %s: %w (logs in %s)", cfg, runErr, dir)
	}
	if stopErr != nil {
		return nil, fmt.Errorf("sweep with %s: stopping: %w", cfg, stopErr)
	}
	if !env.keep {
		os.RemoveAll(dir)
	}
	return res, nil
}

// measureJobs submits every spec at once and waits for all the jobs to be done: the rows the
// fetchers read, the wall time from the first submission to the last job's end, PostgreSQL's
// CPU over it, and each model's last loss (a sweep's, per variant).
func measureJobs(ctx context.Context, c *cluster, env *harness, rows int64, specs [][]byte) (sweepRun, error) {
	var run sweepRun
	cl := client.New(c.coordURL, slog.New(slog.DiscardHandler))
	pgBefore := pgCPUSeconds(env.pg.DataDir)
	start := time.Now()
	for _, s := range specs {
		st, err := cl.Submit(ctx, s)
		if err != nil {
			return run, fmt.Errorf("submitting: %w", err)
		}
		run.JobIDs = append(run.JobIDs, st.ID)
	}
	final := make([]*messages.JobStatus, len(run.JobIDs))
	err := waitFor(ctx, 60*time.Minute, "the jobs to end", c.all(), func() bool {
		ended := true
		for i, id := range run.JobIDs {
			if final[i] != nil {
				continue
			}
			s, err := cl.Job(ctx, id)
			if err != nil || !messages.JobEnded(s.State) {
				ended = false
				continue
			}
			final[i] = s
		}
		return ended
	})
	if err != nil {
		return run, err
	}
	run.WallSeconds = time.Since(start).Seconds()
	run.PGCPUSeconds = pgCPUSeconds(env.pg.DataDir) - pgBefore
	for _, s := range final {
		if s.State != messages.JobDone {
			return run, fmt.Errorf("job %s %s: %s", s.ID, s.State, s.Error)
		}
		run.RowsRead += s.Fetch.RowsRead
		results := [][]messages.EpochResult{s.Results}
		if s.Sweep != nil {
			results = results[:0]
			for _, v := range s.Sweep.Variants {
				results = append(results, v.Results)
			}
		}
		for _, r := range results {
			if len(r) == 0 || r[len(r)-1].Seen.Rows != rows {
				return run, fmt.Errorf("job %s: a model did not train on the table's %d rows", s.ID, rows)
			}
			run.LastLoss = append(run.LastLoss, r[len(r)-1].Loss)
		}
	}
	return run, nil
}
