package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"

	"pgtrain/coordinator"
	"pgtrain/fetcher"
	"pgtrain/preprocessor"
	"pgtrain/scorer"
	"pgtrain/trainer"
)

type coordinatorOpts struct {
	cfg  coordinator.Config
	auth serverAuthFlags
	db   dbFlags
	nats natsFlags
	log  logFlags

	startup startupTimeout
}

func coordinatorFlags() (*flag.FlagSet, *coordinatorOpts) {
	o := &coordinatorOpts{}
	fs := newFlagSet("coordinator", "coordinator [flags]")
	fs.StringVar(&o.cfg.Listen, "listen", coordinator.DefaultListen, "HTTP address of the job and lease API; without --auth-token-file only a loopback address is allowed (see --insecure-no-auth)")
	fs.DurationVar(&o.cfg.LeaseTTL, "lease-ttl", coordinator.DefaultLeaseTTL, "how long a range lease lives without a report from its fetcher")
	fs.IntVar(&o.cfg.Window, "window", coordinator.DefaultWindow, "ranges the fetchers may read ahead of the trainer")
	fs.DurationVar(&o.cfg.SnapshotMaxAge, "snapshot-max-age", coordinator.DefaultSnapshotMaxAge, "how long a snapshot job may keep its snapshot (an open transaction); a job not read by then fails")
	fs.IntVar(&o.cfg.PlanConns, "plan-conns", coordinator.DefaultPlanConns, "connections one planning reads on at once (its own and idle ones borrowed from the source's pool): the key split and parts of the statistics run side by side")
	fs.IntVar(&o.cfg.MaxSnapshotJobs, "max-snapshot-jobs", coordinator.DefaultMaxSnapshotJobs, "snapshot jobs at once (each holds a pooled connection); more are refused with 429")
	fs.Var((*listFlag)(&o.cfg.AllowSchemas), "allow-schema", "a schema jobs may read: SCHEMA for every source, SOURCE:SCHEMA for one (repeatable, or ','-separated); without it every schema but the system ones (pg_catalog, information_schema, pg_toast, temporary), which are never readable. The database role is the real boundary: give the coordinator a read-only role")
	l := &o.cfg.Limits
	fs.IntVar(&l.Epochs, "max-epochs", coordinator.DefaultMaxEpochs, "largest epochs a job may ask for")
	fs.IntVar(&l.BatchSize, "max-batch-size", coordinator.DefaultMaxBatchSize, "largest batch_size a job may ask for")
	fs.IntVar(&l.PageRows, "max-page-rows", coordinator.DefaultMaxPageRows, "largest page_rows a job may ask for (rows a fetcher reads at once)")
	fs.IntVar(&l.VocabSize, "max-vocab-size", coordinator.DefaultMaxVocabSize, "largest vocab_size of a one-hot feature or a label, and buckets of a hashed feature")
	fs.IntVar(&l.VocabValueBytes, "max-vocab-value-bytes", coordinator.DefaultMaxVocabValue, "longest value (in bytes) of a planned vocabulary or label class; a longer one is refused with 400 (encode \"hash\" takes such values)")
	fs.IntVar(&l.ClassWeights, "max-class-weights", coordinator.DefaultMaxClassWeights, "most classes a job's class_weight may list")
	fs.IntVar(&l.ScheduleBoundaries, "max-schedule-boundaries", coordinator.DefaultMaxScheduleBoundaries, "most boundaries of a PiecewiseConstantDecay learning-rate schedule")
	fs.IntVar(&l.SweepVariants, "max-sweep-variants", coordinator.DefaultMaxSweepVariants, "most variants a job's sweep may list (each is a model a trainer trains)")
	fs.IntVar(&l.Layers, "max-layers", coordinator.DefaultMaxLayers, "most layers a model may have")
	fs.IntVar(&l.Units, "max-units", coordinator.DefaultMaxUnits, "most units a dense layer may have")
	fs.Int64Var(&l.Params, "max-params", coordinator.DefaultMaxParams, "most parameters a model may have on the planned input width (4 bytes each, up to 3 times that with the optimizer's state)")
	fs.IntVar(&l.JobsPerSource, "max-jobs-per-source", coordinator.DefaultMaxJobsPerSource, "most jobs running or being planned on one source; one more is refused with 429 and Retry-After")
	fs.Int64Var(&l.PredictBytes, "max-predict-bytes", coordinator.DefaultMaxPredictBytes, "largest body of an online prediction request (POST /v1/models/{id}:predict); more is refused with 413")
	fs.IntVar(&l.PredictInstances, "max-predict-instances", coordinator.DefaultMaxPredictInstances, "most instances in one online prediction request")
	fs.IntVar(&l.ModelCache, "model-cache", coordinator.DefaultModelCache, "models kept loaded for online prediction (each takes the memory of its weights); the least recently used goes first")
	fs.IntVar(&l.ListJobs, "max-list-jobs", coordinator.DefaultMaxListJobs, "largest limit of one GET /v1/jobs page")
	fs.IntVar(&l.Filters, "max-filters", coordinator.DefaultMaxFilters, "most filters in a spec's where")
	fs.IntVar(&l.InValues, "max-in-values", coordinator.DefaultMaxInValues, "most values in the list of one \"in\" filter")
	fs.IntVar(&o.cfg.KeepJobs, "keep-jobs", coordinator.DefaultKeepJobs, fmt.Sprintf("finished jobs (done, failed, cancelled) to keep, at most %d; the oldest beyond it are deleted with their state, plan and batches", coordinator.MaxKeepJobs))
	fs.DurationVar(&o.cfg.KeepJobsFor, "keep-jobs-for", coordinator.DefaultKeepJobsFor, "how long a finished job is kept after it ended (at least 1m); then it is deleted with its state, plan and batches")
	o.auth.register(fs, &o.cfg)
	fs.DurationVar(&o.cfg.ReadHeaderTimeout, "http-read-header-timeout", coordinator.DefaultReadHeaderTimeout, "how long a client may take to send a request's headers")
	fs.DurationVar(&o.cfg.ReadTimeout, "http-read-timeout", coordinator.DefaultReadTimeout, "how long a client may take to send a whole request")
	fs.DurationVar(&o.cfg.WriteTimeout, "http-write-timeout", coordinator.DefaultWriteTimeout, "how long an answer may take (a submission gets the plan timeout more)")
	fs.DurationVar(&o.cfg.IdleTimeout, "http-idle-timeout", coordinator.DefaultIdleTimeout, "how long a kept-alive connection may stay idle")
	o.db.register(fs)
	o.nats.register(fs)
	o.log.register(fs)
	o.startup.register(fs)
	return fs, o
}

func runCoordinator(ctx context.Context, args []string) error {
	fs, o := coordinatorFlags()
	r, err := startRole(ctx, fs, args, "coordinator", nil, &o.log, &o.nats, &o.db, &o.startup)
	if err != nil {
		return err
	}
	defer r.close()
	o.cfg.ReadyMaxBytes = o.nats.readyMaxBytes
	if o.cfg.Tokens, err = o.auth.tokens(); err != nil {
		return err
	}
	c, err := coordinator.New(ctx, o.cfg, r.pools, r.bus, r.log)
	if errors.Is(err, coordinator.ErrNoAuth) {
		return fmt.Errorf("%w: give --auth-token-file, listen on 127.0.0.1, or pass --insecure-no-auth", err)
	}
	if err != nil {
		return err
	}
	return c.Run(ctx)
}

type fetcherOpts struct {
	cfg    fetcher.Config
	coord  string
	auth   coordAuthFlags
	db     dbFlags
	nats   natsFlags
	log    logFlags
	health healthFlags

	startup startupTimeout
}

func fetcherFlags() (*flag.FlagSet, *fetcherOpts) {
	o := &fetcherOpts{}
	fs := newFlagSet("fetcher", "fetcher [flags]")
	fs.StringVar(&o.cfg.WorkerID, "id", "", "worker name in leases and logs (default host-pid)")
	fs.StringVar(&o.coord, "coordinator", "http://127.0.0.1:8080", "coordinator URL")
	fs.IntVar(&o.cfg.ReadAhead, "read-ahead", fetcher.DefaultReadAhead, "pages read ahead of their publish")
	o.auth.register(fs)
	o.db.register(fs)
	o.nats.register(fs)
	o.log.register(fs)
	o.health.register(fs)
	o.startup.register(fs)
	return fs, o
}

func runFetcher(ctx context.Context, args []string) error {
	fs, o := fetcherFlags()
	r, err := startRole(ctx, fs, args, "fetcher", func() error { return o.cfg.WithDefaults().Validate() }, &o.log, &o.nats, &o.db, &o.startup)
	if err != nil {
		return err
	}
	defer r.close()
	cl, err := r.coordinator(ctx, &o.auth, o.coord)
	if err != nil {
		return err
	}
	f, err := fetcher.New(o.cfg, r.pools, r.bus, cl, r.log)
	if err != nil {
		return err
	}
	stop, err := r.serveHealth(o.health, func() any { return f.Stats() }, f)
	if err != nil {
		return err
	}
	defer stop()
	return f.Run(ctx)
}

type preprocessorOpts struct {
	cfg    preprocessor.Config
	coord  string
	auth   coordAuthFlags
	nats   natsFlags
	log    logFlags
	health healthFlags

	startup startupTimeout
}

func preprocessorFlags() (*flag.FlagSet, *preprocessorOpts) {
	o := &preprocessorOpts{}
	fs := newFlagSet("preprocessor", "preprocessor [flags]")
	fs.StringVar(&o.coord, "coordinator", "http://127.0.0.1:8080", "coordinator URL (to fail a job on a bad row)")
	fs.IntVar(&o.cfg.Concurrency, "concurrency", preprocessor.DefaultConcurrency, "batches transformed at once")
	o.auth.register(fs)
	o.nats.register(fs)
	o.log.register(fs)
	o.health.register(fs)
	o.startup.register(fs)
	return fs, o
}

func runPreprocessor(ctx context.Context, args []string) error {
	fs, o := preprocessorFlags()
	r, err := startRole(ctx, fs, args, "preprocessor", func() error { return o.cfg.WithDefaults().Validate() }, &o.log, &o.nats, nil, &o.startup)
	if err != nil {
		return err
	}
	defer r.close()
	cl, err := r.coordinator(ctx, &o.auth, o.coord)
	if err != nil {
		return err
	}
	p, err := preprocessor.New(o.cfg, r.bus, cl, r.log)
	if err != nil {
		return err
	}
	stop, err := r.serveHealth(o.health, func() any { return p.Stats() }, p)
	if err != nil {
		return err
	}
	defer stop()
	return p.Run(ctx)
}

type trainerOpts struct {
	cfg    trainer.Config
	coord  string
	auth   coordAuthFlags
	nats   natsFlags
	log    logFlags
	health healthFlags

	startup startupTimeout
}

func trainerFlags() (*flag.FlagSet, *trainerOpts) {
	o := &trainerOpts{}
	fs := newFlagSet("trainer", "trainer [flags]")
	fs.StringVar(&o.cfg.TrainerID, "id", "", "trainer name, kept across restarts so a restarted trainer resumes its job (default hostname)")
	fs.StringVar(&o.coord, "coordinator", "http://127.0.0.1:8080", "coordinator URL")
	fs.StringVar(&o.cfg.OutDir, "out-dir", "pgtrain-data/models", "where models, checkpoints and histories are written")
	fs.IntVar(&o.cfg.Prefetch, "prefetch", 2, "key ranges read ahead from READY (memory is bounded by prefetch+1 ranges)")
	o.cfg.ReadAhead = trainer.DefaultReadAhead
	fs.Func("read-ahead", fmt.Sprintf("pages requested from READY at once, so that round trips overlap decoding (1 to %d; 1 reads one page at a time; default %d)", trainer.MaxReadAhead, trainer.DefaultReadAhead),
		func(s string) error {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > trainer.MaxReadAhead {
				return fmt.Errorf("must be a whole number from 1 to %d", trainer.MaxReadAhead)
			}
			o.cfg.ReadAhead = n
			return nil
		})
	fs.BoolVar(&o.cfg.Once, "once", false, "exit after one job")
	fs.BoolVar(&o.cfg.AllowDrift, "allow-drift", false, "only warn when an epoch's key checksum differs from the plan (live tables without a snapshot)")
	fs.Func("backend", "run every job on this model backend (go, or tensorflow in a binary built with -tags tensorflow) whatever its spec says; empty: as the job spec says",
		func(name string) error {
			if name != "" {
				if err := trainer.CheckBackend(name); err != nil {
					return err
				}
			}
			o.cfg.Backend = name
			return nil
		})
	fs.DurationVar(&o.cfg.StepDelay, "step-delay", 0, "pause after every batch, to throttle a trainer on a shared machine (and, in tests, to make it the slowest stage)")
	o.auth.register(fs)
	o.nats.register(fs)
	o.log.register(fs)
	o.health.register(fs)
	o.startup.register(fs)
	return fs, o
}

func runTrainer(ctx context.Context, args []string) error {
	fs, o := trainerFlags()
	r, err := startRole(ctx, fs, args, "trainer", func() error { return o.cfg.WithDefaults().Validate() }, &o.log, &o.nats, nil, &o.startup)
	if err != nil {
		return err
	}
	defer r.close()
	cl, err := r.coordinator(ctx, &o.auth, o.coord)
	if err != nil {
		return err
	}
	t, err := trainer.New(o.cfg, r.bus, cl, r.log)
	if err != nil {
		return err
	}
	stop, err := r.serveHealth(o.health, nil, t)
	if err != nil {
		return err
	}
	defer stop()
	return t.Run(ctx)
}

type scorerOpts struct {
	cfg    scorer.Config
	coord  string
	auth   coordAuthFlags
	db     dbFlags
	nats   natsFlags
	log    logFlags
	health healthFlags

	startup startupTimeout
}

func scorerFlags() (*flag.FlagSet, *scorerOpts) {
	o := &scorerOpts{}
	fs := newFlagSet("scorer", "scorer [flags]")
	fs.StringVar(&o.cfg.ScorerID, "id", "", "scorer name in reports and logs (default host-pid)")
	fs.StringVar(&o.coord, "coordinator", "http://127.0.0.1:8080", "coordinator URL")
	fs.IntVar(&o.cfg.Concurrency, "concurrency", scorer.DefaultConcurrency, "batches of one job written at once")
	fs.DurationVar(&o.cfg.AckWait, "ack-wait", scorer.DefaultAckWait, "how long a delivered batch may go unacknowledged before another scorer gets it (a dead scorer's batches wait this long)")
	o.auth.register(fs)
	o.db.register(fs)
	o.nats.register(fs)
	o.log.register(fs)
	o.health.register(fs)
	o.startup.register(fs)
	return fs, o
}

func runScorer(ctx context.Context, args []string) error {
	fs, o := scorerFlags()
	r, err := startRole(ctx, fs, args, "scorer", func() error { return o.cfg.WithDefaults().Validate() }, &o.log, &o.nats, &o.db, &o.startup)
	if err != nil {
		return err
	}
	defer r.close()
	cl, err := r.coordinator(ctx, &o.auth, o.coord)
	if err != nil {
		return err
	}
	s, err := scorer.New(o.cfg, r.pools, r.bus, cl, r.log)
	if err != nil {
		return err
	}
	stop, err := r.serveHealth(o.health, func() any { return s.Stats() }, s)
	if err != nil {
		return err
	}
	defer stop()
	return s.Run(ctx)
}
