// Package local runs every pgtrain role in one process, on given PostgreSQL pools and a
// NATS server: what `pgtrain up` runs, and what the end-to-end tests and the benchmark
// harness drive. The roles talk to each other exactly as separate processes would (HTTP to
// the coordinator, JetStream between the workers); only the process is shared.
package local

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"pgtrain/coordinator"
	"pgtrain/coordinator/client"
	"pgtrain/fetcher"
	"pgtrain/internal/bus"
	"pgtrain/preprocessor"
	"pgtrain/scorer"
	"pgtrain/trainer"
)

// Options sizes the cluster. Zero fields take the roles' defaults.
type Options struct {
	// Sources are the databases by name; "" is the default source.
	Sources       map[string]*pgxpool.Pool
	NATSURL       string
	NATSAuth      bus.Auth
	Fetchers      int
	Preprocessors int
	// Trainer false leaves training to a trainer run elsewhere (a benchmark's own, say).
	Trainer bool
	// Trainers is how many trainers run when Trainer is set (0 means 1): each trains one job,
	// or one variant of a sweep job, at a time.
	Trainers int
	// Scorers write the predictions of prediction jobs.
	Scorers     int
	ScorerCfg   scorer.Config
	Coordinator coordinator.Config
	Fetcher     fetcher.Config
	Preproc     preprocessor.Config
	TrainerCfg  trainer.Config
	Limits      bus.Limits
	Log         *slog.Logger
}

// Cluster is the running roles.
type Cluster struct {
	Coordinator *coordinator.Coordinator
	// Client is a user's client (scopes read, submit, data and predict).
	Client *client.Client
	// WorkerClient holds the worker scope, as the fetchers, preprocessors and the trainer do.
	WorkerClient *client.Client
	Bus          *bus.Bus
	userToken    string
	nc           *nats.Conn
	cancel       context.CancelFunc
	wg           sync.WaitGroup
	errs         chan error
}

// UserScopes are the user token's: the user of a local cluster owns its data, so the token
// sees it, pulls models and predicts too. The compose secrets script gives its user the same.
var UserScopes = []coordinator.Scope{coordinator.ScopeRead, coordinator.ScopeSubmit, coordinator.ScopeData, coordinator.ScopePredict}

// Start runs the coordinator, waits until it listens, then starts the workers. The roles
// run until Stop; cancelling ctx only interrupts the start-up. Authentication is always on:
// Start makes a random worker token for the roles and a user token for Client, and the
// coordinator also accepts any token in o.Coordinator.Tokens.
func Start(ctx context.Context, o Options) (*Cluster, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Coordinator.Listen == "" {
		o.Coordinator.Listen = "127.0.0.1:0"
	}
	if o.Coordinator.ReadyMaxBytes == 0 {
		o.Coordinator.ReadyMaxBytes = o.Limits.ReadyMaxBytes
	}
	workerToken, err := coordinator.GenerateToken()
	if err != nil {
		return nil, err
	}
	userToken, err := coordinator.GenerateToken()
	if err != nil {
		return nil, err
	}
	wt, err := coordinator.NewToken("local-workers", workerToken, coordinator.ScopeWorker)
	if err != nil {
		return nil, err
	}
	ut, err := coordinator.NewToken("local-user", userToken, UserScopes...)
	if err != nil {
		return nil, err
	}
	o.Coordinator.Tokens = append(slices.Clone(o.Coordinator.Tokens), wt, ut)
	nc, err := bus.ConnectAuth(o.NATSURL, "pgtrain-local", log, o.NATSAuth)
	if err != nil {
		return nil, err
	}
	b, err := bus.Ensure(ctx, nc, o.Limits)
	if err != nil {
		nc.Close()
		return nil, err
	}
	coord, err := coordinator.New(ctx, o.Coordinator, o.Sources, b, log.With("role", "coordinator"))
	if err != nil {
		nc.Close()
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c := &Cluster{Coordinator: coord, Bus: b, userToken: userToken, nc: nc, cancel: cancel, errs: make(chan error, 2+o.Fetchers+o.Preprocessors+o.Scorers)}
	c.run(rctx, "coordinator", coord.Run)
	select {
	case <-coord.Ready():
	case err := <-c.errs:
		c.Stop()
		return nil, err
	case <-ctx.Done():
		c.Stop()
		return nil, ctx.Err()
	}
	// The workers' metrics join the coordinator's /metrics, labelled by worker since several
	// of a kind share the process.
	perWorker := func(worker string) prometheus.Registerer {
		return prometheus.WrapRegistererWith(prometheus.Labels{"worker": worker}, coord.Registry())
	}
	c.Client = client.New(c.URL(), log.With("role", "client"), client.WithToken(userToken))
	c.WorkerClient = client.New(c.URL(), log.With("role", "worker-client"), client.WithToken(workerToken))
	for i := 1; i <= o.Fetchers; i++ {
		cfg := o.Fetcher
		cfg.WorkerID = fmt.Sprintf("fetcher-%d", i)
		f, err := fetcher.New(cfg, o.Sources, b, c.WorkerClient, log.With("role", "fetcher", "worker", i))
		if err != nil {
			c.Stop()
			return nil, err
		}
		perWorker(cfg.WorkerID).MustRegister(f)
		c.run(rctx, cfg.WorkerID, f.Run)
	}
	for i := 1; i <= o.Preprocessors; i++ {
		p, err := preprocessor.New(o.Preproc, b, c.WorkerClient, log.With("role", "preprocessor", "worker", i))
		if err != nil {
			c.Stop()
			return nil, err
		}
		name := fmt.Sprintf("preprocessor-%d", i)
		perWorker(name).MustRegister(p)
		c.run(rctx, name, p.Run)
	}
	for i := 1; i <= o.Scorers; i++ {
		cfg := o.ScorerCfg
		cfg.ScorerID = fmt.Sprintf("scorer-%d", i)
		s, err := scorer.New(cfg, o.Sources, b, c.WorkerClient, log.With("role", "scorer", "worker", i))
		if err != nil {
			c.Stop()
			return nil, err
		}
		c.run(rctx, cfg.ScorerID, s.Run)
	}
	if o.Trainer {
		base := o.TrainerCfg.TrainerID
		if base == "" {
			base = "local-trainer"
		}
		n := max(o.Trainers, 1)
		for i := 1; i <= n; i++ {
			cfg := o.TrainerCfg
			name := "trainer"
			cfg.TrainerID = base
			if n > 1 {
				cfg.TrainerID = fmt.Sprintf("%s-%d", base, i)
				name = cfg.TrainerID
			}
			t, err := trainer.New(cfg, b, c.WorkerClient, log.With("role", "trainer"))
			if err != nil {
				c.Stop()
				return nil, err
			}
			perWorker(cfg.TrainerID).MustRegister(t)
			c.run(rctx, name, t.Run)
		}
	}
	return c, nil
}

// URL is the coordinator's base URL.
func (c *Cluster) URL() string { return "http://" + c.Coordinator.Addr() }

// UserToken is the secret of Client's token (scopes read and submit), for a user outside
// the process. Never log it.
func (c *Cluster) UserToken() string { return c.userToken }

// Err delivers the first role that stopped with an error.
func (c *Cluster) Err() <-chan error { return c.errs }

func (c *Cluster) run(ctx context.Context, name string, run func(context.Context) error) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if err := run(ctx); err != nil && ctx.Err() == nil {
			c.errs <- fmt.Errorf("%s: %w", name, err)
		}
	}()
}

// Stop shuts every role down (each finishes its in-flight work) and closes the connection.
func (c *Cluster) Stop() {
	c.cancel()
	c.wg.Wait()
	c.nc.Close()
}
