package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"pgtrain/internal/devenv"
	"pgtrain/internal/pgutil"
)

// compareMode runs the no-op end-to-end job with two pgtrain binaries in turn on one table
// (created when missing) and prints each run's planning, time to the first batch, first
// epoch, replay epochs (with --epochs above 1) and CPU seconds per process: a change to the
// pipeline judged side by side under the same load, which a shared machine's wall times
// cannot be across runs. The trainer is this harness (trainer_role.go) in both, so a change
// to the trainer package is judged by two harness builds instead.
//
//	pipeline compare --rows 2000000 --a /tmp/pgtrain-before --b bin/pgtrain --runs 3
func compareMode(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	rows := fs.Int("rows", 2_000_000, "rows in the table")
	a := fs.String("a", "", "the first pgtrain binary (the one before a change)")
	b := fs.String("b", "", "the second pgtrain binary (the one after it)")
	runs := fs.Int("runs", 3, "runs of each binary, alternated (a, b, a, b, ...)")
	fetchers := fs.Int("fetchers", 2, "fetcher processes")
	epochs := fs.Int("epochs", 1, "epochs of the no-op model")
	dsn := fs.String("dsn", "", "PostgreSQL to use instead of a throwaway cluster (its table is created when missing and kept)")
	dataDir := fs.String("pg-data-dir", "", "with --dsn, the server's data directory, to read its CPU time (optional)")
	keep := fs.Bool("keep", false, "keep every run's logs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *a == "" || *b == "" {
		return fmt.Errorf("--a and --b name the two pgtrain binaries")
	}
	h := &harness{keep: *keep}
	var err error
	if h.tmp, err = os.MkdirTemp("", "pgtrain-compare-"); err != nil {
		return err
	}
	defer func() {
		if !*keep {
			os.RemoveAll(h.tmp)
		}
	}()
	if err := os.Chmod(h.tmp, 0o755); err != nil {
		return err
	}
	if h.self, err = os.Executable(); err != nil {
		return err
	}
	h.dsn = *dsn
	h.pg = &devenv.Postgres{DataDir: *dataDir}
	if h.dsn == "" {
		if h.pg, err = devenv.StartPostgres(ctx, devenv.PostgresOptions{Dir: filepath.Join(h.tmp, "postgres")}); err != nil {
			return err
		}
		defer h.pg.Stop()
		h.dsn = h.pg.DSN
	}
	if h.pool, err = pgutil.NewPool(ctx, h.dsn, 4); err != nil {
		return err
	}
	defer h.pool.Close()
	table := tableName(*rows)
	var exists bool
	if err := h.pool.QueryRow(ctx, "select to_regclass($1) is not null", table).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		fmt.Printf("creating %s\n", table)
		if err := createTable(ctx, h.pool, table, *rows); err != nil {
			return err
		}
	}
	cfg := e2eConfig{Model: modelNoop, Fetchers: *fetchers, Preprocessors: 1, Epochs: *epochs}
	bins := map[string]string{"a": *a, "b": *b}
	fmt.Println("run bin  plan_s  first_batch_s  first_epoch_s  replay_s  replay_rows/s  cpu_s: postgres(plan) postgres coordinator fetcher preprocessor trainer nats")
	for i := range *runs * 2 {
		name := []string{"a", "b"}[i%2]
		h.pgtrain = bins[name]
		r, err := runE2E(ctx, h, table, int64(*rows), cfg)
		if err != nil {
			return fmt.Errorf("%s (%s): %w", name, bins[name], err)
		}
		c := r.CPUSeconds
		// Replay epochs are the later epochs read from READY (none when the plan rereads).
		replay := "        -              -"
		if r.Replay && r.ReplayEpochs.Seconds > 0 {
			replay = fmt.Sprintf("%9.2f  %13.0f", r.ReplayEpochs.Seconds, r.ReplayEpochs.RowsPerS)
		}
		fmt.Printf("%3d %s  %6.2f  %13.2f  %13.2f  %s  %5.2f %5.2f %5.2f %5.2f %5.2f %5.2f %5.2f\n", i/2+1, name, r.PlanSeconds, r.TimeToFirstBatch,
			r.FirstEpoch.Seconds, replay, r.PlanPGCPUSeconds, c["postgres"], c["coordinator"], c["fetcher"], c["preprocessor"], c["trainer"], c["nats"])
	}
	if *keep {
		fmt.Println("logs in", h.tmp)
	}
	return nil
}
