package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"pgtrain/internal/bus"
	"pgtrain/internal/pgutil"
	"pgtrain/messages"
)

// prefixFlag is --nats-prefix, checked when it is set so a bad value names the flag.
type prefixFlag string

func (p *prefixFlag) String() string { return string(*p) }

func (p *prefixFlag) Set(v string) error {
	if err := messages.ValidPrefix(v); err != nil {
		return err
	}
	*p = prefixFlag(v)
	return nil
}

// registerPrefix adds --nats-prefix, shared by the roles and `pgtrain up`.
func registerPrefix(fs *flag.FlagSet, p *prefixFlag) {
	*p = messages.DefaultPrefix
	fs.Var(p, "nats-prefix", "prefix of the stream, KV bucket and subject names, so that deployments with different prefixes share one NATS account (give every role of a deployment the same value)")
}

// natsFlags are the bus settings every role shares.
type natsFlags struct {
	url           string
	prefix        prefixFlag
	readyMaxBytes int64
	rawAckWait    time.Duration
}

func (n *natsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&n.url, "nats-url", "nats://127.0.0.1:4222", "NATS server URL (JetStream enabled)")
	registerPrefix(fs, &n.prefix)
	fs.Int64Var(&n.readyMaxBytes, "ready-max-bytes", bus.DefaultReadyMaxBytes, "byte limit of the READY stream (backpressure, and the replay decision)")
	fs.DurationVar(&n.rawAckWait, "raw-ack-wait", bus.DefaultRawAckWait, "how long a RAW page may stay unacknowledged before it is redelivered to another preprocessor (give every role the same value)")
}

func (n *natsFlags) connect(ctx context.Context, name string, log *slog.Logger) (*nats.Conn, *bus.Bus, error) {
	nc, err := bus.Connect(n.url, name, log)
	if err != nil {
		return nil, nil, err
	}
	b, err := bus.Ensure(ctx, nc, bus.Limits{Prefix: string(n.prefix), ReadyMaxBytes: n.readyMaxBytes, RawAckWait: n.rawAckWait})
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, b, nil
}

// dbFlags are the database sources of the coordinator and the fetchers.
type dbFlags struct {
	dsn      string
	sources  sourceFlags
	maxConns int
}

func (d *dbFlags) register(fs *flag.FlagSet) {
	d.sources = sourceFlags{}
	fs.StringVar(&d.dsn, "dsn", "", "PostgreSQL connection string of the default source (a password is better kept in ~/.pgpass or PGPASSWORD)")
	fs.Var(d.sources, "source", "an extra named source, name=dsn (repeatable; ';' separates several in the environment)")
	fs.IntVar(&d.maxConns, "max-conns", 0, "pool size per source (0: pgx's default)")
}

// pools opens one pool per source; "" is the default source.
func (d *dbFlags) pools(ctx context.Context) (map[string]*pgxpool.Pool, func(), error) {
	dsns := map[string]string{}
	for name, dsn := range d.sources {
		dsns[name] = dsn
	}
	if d.dsn != "" {
		dsns[""] = d.dsn
	}
	if len(dsns) == 0 {
		return nil, nil, fmt.Errorf("no database: give --dsn (or $PGTRAIN_DSN) or --source name=dsn")
	}
	pools := map[string]*pgxpool.Pool{}
	closeAll := func() {
		for _, p := range pools {
			p.Close()
		}
	}
	for name, dsn := range dsns {
		p, err := pgutil.NewPool(ctx, dsn, int32(d.maxConns))
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("source %q: %w", name, err)
		}
		pools[name] = p
	}
	return pools, closeAll, nil
}

// role is what every role process sets up before it runs: a logger, the bus, and (for the
// roles that read PostgreSQL) the pools.
type role struct {
	log   *slog.Logger
	bus   *bus.Bus
	pools map[string]*pgxpool.Pool
	close func()
}

// startRole parses the flags, then connects what the role needs; db is nil for roles that
// never touch PostgreSQL.
func startRole(ctx context.Context, fs *flag.FlagSet, args []string, name string, lf *logFlags, nf *natsFlags, db *dbFlags) (*role, error) {
	if err := parse(fs, args); err != nil {
		return nil, err
	}
	log, err := lf.logger(os.Stderr)
	if err != nil {
		return nil, err
	}
	if err := armFaults(log); err != nil {
		return nil, err
	}
	r := &role{log: log, close: func() {}}
	if db != nil {
		pools, closePools, err := db.pools(ctx)
		if err != nil {
			return nil, err
		}
		r.pools, r.close = pools, closePools
	}
	nc, b, err := nf.connect(ctx, "pgtrain-"+name, log)
	if err != nil {
		r.close()
		return nil, err
	}
	closePools := r.close
	r.bus = b
	r.close = func() {
		nc.Close()
		closePools()
	}
	return r, nil
}
