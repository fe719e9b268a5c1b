package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/internal/devenv"
	"pgtrain/internal/local"
	"pgtrain/internal/pgutil"
	"pgtrain/messages"
	"pgtrain/trainer"
)

// runProfile runs one job with the NATS server and every role in this process and profiles
// the CPU while the job runs. Only PostgreSQL is outside, so the profile shows where the
// Go side of the pipeline spends its time: reading, encoding, the bus, transforming,
// training.
func runProfile(ctx context.Context, h *harness, o options) error {
	if err := os.MkdirAll(o.profile, 0o755); err != nil {
		return err
	}
	fetchers, err := parseInts(o.fetchers)
	if err != nil || len(fetchers) == 0 {
		return fmt.Errorf("--fetchers %q: %w", o.fetchers, err)
	}
	table := tableName(o.rows)
	fmt.Printf("creating %s (%d rows)\n", table, o.rows)
	if err := createTable(ctx, h.pool, table, o.rows); err != nil {
		return err
	}
	if o.profileModel == modelNoop {
		trainer.RegisterBackend("go", func(*messages.Plan) (trainer.Model, error) { return noopModel{mark: func() {}}, nil })
	}
	n, err := devenv.StartNATS(devenv.NATSOptions{StoreDir: filepath.Join(h.tmp, "nats-profile")})
	if err != nil {
		return err
	}
	defer n.Stop()
	// The same pool size as `pgtrain up`: a connection per fetcher and some for planning.
	pool, err := pgutil.NewPool(ctx, h.dsn, int32(fetchers[0]+4))
	if err != nil {
		return err
	}
	defer pool.Close()
	c, err := local.Start(ctx, local.Options{
		Sources:       map[string]*pgxpool.Pool{"": pool},
		NATSURL:       n.URL,
		Fetchers:      fetchers[0],
		Preprocessors: o.preprocessors,
		Trainer:       true,
		TrainerCfg:    trainer.Config{TrainerID: "profile", OutDir: filepath.Join(h.tmp, "models"), Poll: 10 * time.Millisecond},
		Log:           slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return err
	}
	defer c.Stop()

	f, err := os.Create(filepath.Join(o.profile, "cpu.pprof"))
	if err != nil {
		return err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	start := time.Now()
	st, err := c.Client.Submit(ctx, jobSpec(table, o.profileModel, o.noopEpochs))
	if err != nil {
		pprof.StopCPUProfile()
		return err
	}
	planned := time.Now()
	var seen []time.Time
	var final *messages.JobStatus
	for final == nil {
		s, err := c.Client.Job(ctx, st.ID)
		if err != nil {
			pprof.StopCPUProfile()
			return err
		}
		for len(seen) < len(s.Results) {
			seen = append(seen, time.Now())
		}
		if s.State == messages.JobDone || s.State == messages.JobFailed {
			final = s
			break
		}
		select {
		case err := <-c.Err():
			pprof.StopCPUProfile()
			return err
		case <-ctx.Done():
			pprof.StopCPUProfile()
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	pprof.StopCPUProfile()
	if final.State != messages.JobDone {
		return fmt.Errorf("job %s: %s", final.State, final.Error)
	}
	fmt.Printf("%s model, %d fetcher(s), %d preprocessor(s): plan %.2fs, first epoch %.2fs (%.0f rows/s), epochs by the trainer:",
		o.profileModel, fetchers[0], o.preprocessors, planned.Sub(start).Seconds(), seen[0].Sub(planned).Seconds(),
		float64(final.Rows)/seen[0].Sub(planned).Seconds())
	for _, r := range final.Results {
		fmt.Printf(" %.2fs", r.Seconds)
	}
	fmt.Printf("\nCPU profile: go tool pprof -top %s\n", f.Name())
	return nil
}
