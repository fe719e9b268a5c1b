package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"pgtrain/coordinator/client"
	"pgtrain/internal/bus"
	"pgtrain/internal/pgutil"
	"pgtrain/internal/workloop"
)

// Bounds of --startup-timeout.
const (
	defaultStartupTimeout = 30 * time.Second
	maxStartupTimeout     = time.Hour
)

// startupTimeout is --startup-timeout: how long a process waits for each dependency (NATS,
// PostgreSQL, the coordinator) at start before it exits with the reason.
type startupTimeout time.Duration

func (s *startupTimeout) String() string { return time.Duration(*s).String() }

func (s *startupTimeout) Set(v string) error {
	d, err := time.ParseDuration(v)
	if err != nil {
		return err
	}
	if d <= 0 || d > maxStartupTimeout {
		return fmt.Errorf("want more than 0 and at most %s, got %s", maxStartupTimeout, d)
	}
	*s = startupTimeout(d)
	return nil
}

func (s *startupTimeout) register(fs *flag.FlagSet) {
	*s = startupTimeout(defaultStartupTimeout)
	fs.Var(s, "startup-timeout", "how long to wait at start for each dependency (NATS, PostgreSQL, the coordinator) before exiting with the reason; a refused login, an unknown database or host is reported at once")
}

func (s startupTimeout) duration() time.Duration { return time.Duration(s) }

// waitFor retries check until it succeeds, a permanent error, or the startup timeout; each
// retry logs "waiting for <what>" with the reason, so an operator sees what is missing.
func waitFor(ctx context.Context, log *slog.Logger, timeout time.Duration, what string, check func(context.Context) error, permanent func(error) bool) error {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	backoff := workloop.Backoff{Min: 250 * time.Millisecond, Max: 2 * time.Second}
	for {
		err := check(wctx)
		switch {
		case err == nil:
			return nil
		case permanent(err):
			return err
		case ctx.Err() != nil:
			return fmt.Errorf("interrupted while waiting for %s: %w", what, err)
		}
		log.Warn("waiting for "+what, "error", err, "retry_in", backoff.Next(), "startup_timeout", timeout)
		if !backoff.Wait(wctx) {
			if ctx.Err() != nil {
				return fmt.Errorf("interrupted while waiting for %s: %w", what, err)
			}
			return fmt.Errorf("%s not reachable within %s (--startup-timeout): %w", what, timeout, err)
		}
	}
}

// waitNATS waits until nc is connected.
func waitNATS(ctx context.Context, log *slog.Logger, timeout time.Duration, url string, nc *nats.Conn) error {
	what := "NATS at " + pgutil.Redact(url)
	var final bool
	err := waitFor(ctx, log, timeout, what, func(context.Context) error {
		var err error
		final, err = bus.Connected(nc)
		return err
	}, func(error) bool { return final })
	if final {
		return fmt.Errorf("%s: %w", what, err)
	}
	return err
}

// waitPostgres waits until every source answers a ping; a refused login, an unknown
// database or host is reported at once.
func waitPostgres(ctx context.Context, log *slog.Logger, timeout time.Duration, dsns map[string]string, pools map[string]*pgxpool.Pool) error {
	for _, name := range sortedKeys(pools) {
		what := "PostgreSQL at " + pgutil.Redact(dsns[name])
		if name != "" {
			what += fmt.Sprintf(" (source %q)", name)
		}
		err := waitFor(ctx, log, timeout, what, func(ctx context.Context) error {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			return pools[name].Ping(pctx)
		}, pgutil.Permanent)
		if err != nil {
			if pgutil.Permanent(err) {
				return fmt.Errorf("%s: %w (a wrong user, password, database or host name does not mend by waiting: fix the DSN)", what, err)
			}
			return err
		}
	}
	return nil
}

// coordinator is a worker's client of the coordinator at url, once that answers (or an
// error when it does not within --startup-timeout).
func (r *role) coordinator(ctx context.Context, auth *coordAuthFlags, url string) (*client.Client, error) {
	cl, err := auth.client(url, r.log)
	if err != nil {
		return nil, err
	}
	if err := waitCoordinator(ctx, r.log, r.startup, url, cl); err != nil {
		return nil, err
	}
	return cl, nil
}

// waitCoordinator waits until the coordinator answers its /healthz.
func waitCoordinator(ctx context.Context, log *slog.Logger, timeout time.Duration, url string, cl *client.Client) error {
	return waitFor(ctx, log, timeout, "the coordinator at "+pgutil.Redact(url), cl.Live, client.Permanent)
}
