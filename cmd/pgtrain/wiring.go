package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
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

// replicasFlag is --stream-replicas, checked when it is set so a bad value names the flag.
type replicasFlag int

func (r *replicasFlag) String() string { return strconv.Itoa(int(*r)) }

func (r *replicasFlag) Set(v string) error {
	n, err := strconv.Atoi(v)
	if err != nil {
		return fmt.Errorf("want a number of replicas, 1..%d", bus.MaxReplicas)
	}
	if n < 1 || n > bus.MaxReplicas {
		return fmt.Errorf("%d replicas: want 1..%d", n, bus.MaxReplicas)
	}
	*r = replicasFlag(n)
	return nil
}

// natsFlags are the bus settings every role shares.
type natsFlags struct {
	url            string
	prefix         prefixFlag
	readyMaxBytes  int64
	rawAckWait     time.Duration
	streamReplicas replicasFlag
	auth           natsAuthFlags
}

func (n *natsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&n.url, "nats-url", "nats://127.0.0.1:4222", "NATS server URL (JetStream enabled); for a cluster, every node's, comma-separated, so a role reconnects to another when one is down")
	registerPrefix(fs, &n.prefix)
	fs.Int64Var(&n.readyMaxBytes, "ready-max-bytes", bus.DefaultReadyMaxBytes, "byte limit of the READY stream (backpressure, and the replay decision)")
	fs.DurationVar(&n.rawAckWait, "raw-ack-wait", bus.DefaultRawAckWait, "how long a RAW page may stay unacknowledged before it is redelivered to another preprocessor (give every role the same value)")
	n.streamReplicas = 1
	fs.Var(&n.streamReplicas, "stream-replicas", fmt.Sprintf("copies a JetStream cluster keeps of RAW, READY, the state bucket and the model store, 1..%d (more than 1 needs a cluster; give every role the same value)", bus.MaxReplicas))
	n.auth.register(fs)
}

// connect connects and declares the streams, waiting up to timeout for the server (and as
// long again for JetStream to answer).
func (n *natsFlags) connect(ctx context.Context, name string, log *slog.Logger, timeout time.Duration) (*nats.Conn, *bus.Bus, error) {
	auth, err := n.auth.auth()
	if err != nil {
		return nil, nil, err
	}
	nc, err := bus.ConnectAuth(n.url, name, log, auth)
	if err != nil {
		return nil, nil, err
	}
	if err := waitNATS(ctx, log, timeout, n.url, nc); err != nil {
		nc.Close()
		return nil, nil, err
	}
	ectx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	b, err := bus.Ensure(ectx, nc, bus.Limits{Prefix: string(n.prefix), ReadyMaxBytes: n.readyMaxBytes, RawAckWait: n.rawAckWait, Replicas: int(n.streamReplicas)})
	if err != nil {
		nc.Close()
		if errors.Is(err, bus.ErrReplicasNotSupported) {
			return nil, nil, fmt.Errorf("--stream-replicas %d: NATS at %s is a single server: %w", n.streamReplicas, pgutil.Redact(n.url), err)
		}
		return nil, nil, fmt.Errorf("NATS at %s: %w", pgutil.Redact(n.url), err)
	}
	return nc, b, nil
}

// natsAuthFlags are how a client of NATS proves who it is and checks the server. Secrets
// come from files so they stay out of ps and shell history.
type natsAuthFlags struct {
	creds        string
	nkey         string
	user         string
	passwordFile string
	tokenFile    string
	tlsCA        string
	tlsCert      string
	tlsKey       string
}

func (a *natsAuthFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.creds, "nats-creds", "", "NATS credentials file (user JWT and nkey seed, for a server in operator mode)")
	fs.StringVar(&a.nkey, "nats-nkey", "", "file holding a NATS user nkey seed (SU...)")
	fs.StringVar(&a.user, "nats-user", "", "NATS user name (with --nats-password-file)")
	fs.StringVar(&a.passwordFile, "nats-password-file", "", "file holding the NATS user's password")
	fs.StringVar(&a.tokenFile, "nats-token-file", "", "file holding the NATS server's auth token")
	fs.StringVar(&a.tlsCA, "nats-tls-ca", "", "CA certificate (PEM) that signed the NATS server's certificate")
	fs.StringVar(&a.tlsCert, "nats-tls-cert", "", "client certificate (PEM) for a NATS server that asks for one")
	fs.StringVar(&a.tlsKey, "nats-tls-key", "", "key (PEM) of --nats-tls-cert")
}

// set reports whether any flag was given.
func (a *natsAuthFlags) set() bool {
	return *a != natsAuthFlags{}
}

// auth checks the files exist and reads the secrets, naming the flag in every error.
func (a *natsAuthFlags) auth() (bus.Auth, error) {
	var given []string
	for _, f := range []struct{ name, v string }{
		{"--nats-creds", a.creds}, {"--nats-nkey", a.nkey}, {"--nats-user", a.user}, {"--nats-token-file", a.tokenFile},
	} {
		if f.v != "" {
			given = append(given, f.name)
		}
	}
	if len(given) > 1 {
		return bus.Auth{}, fmt.Errorf("%s: give one way to authenticate to NATS", strings.Join(given, " and "))
	}
	if (a.user == "") != (a.passwordFile == "") {
		return bus.Auth{}, errors.New("--nats-user and --nats-password-file go together")
	}
	if (a.tlsCert == "") != (a.tlsKey == "") {
		return bus.Auth{}, errors.New("--nats-tls-cert and --nats-tls-key go together")
	}
	for _, f := range []struct{ name, path string }{
		{"--nats-creds", a.creds}, {"--nats-nkey", a.nkey}, {"--nats-tls-ca", a.tlsCA}, {"--nats-tls-cert", a.tlsCert}, {"--nats-tls-key", a.tlsKey},
	} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return bus.Auth{}, fmt.Errorf("%s: %w", f.name, err)
		}
	}
	auth := bus.Auth{CredsFile: a.creds, NkeyFile: a.nkey, User: a.user, TLSCA: a.tlsCA, TLSCert: a.tlsCert, TLSKey: a.tlsKey}
	var err error
	if a.passwordFile != "" {
		if auth.Password, err = readSecret("--nats-password-file", a.passwordFile); err != nil {
			return bus.Auth{}, err
		}
	}
	if a.tokenFile != "" {
		if auth.Token, err = readSecret("--nats-token-file", a.tokenFile); err != nil {
			return bus.Auth{}, err
		}
	}
	return auth, nil
}

// readSecret reads a one-line secret file; the trailing newline editors add is not part of it.
func readSecret(flagName, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", flagName, err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s: %s is empty", flagName, path)
	}
	return s, nil
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

// dsns are the sources' connection strings by name; "" is the default source.
func (d *dbFlags) dsns() map[string]string {
	dsns := map[string]string{}
	for name, dsn := range d.sources {
		dsns[name] = dsn
	}
	if d.dsn != "" {
		dsns[""] = d.dsn
	}
	return dsns
}

// pools opens one pool per source; "" is the default source.
func (d *dbFlags) pools(ctx context.Context) (map[string]*pgxpool.Pool, func(), error) {
	dsns := d.dsns()
	if len(dsns) == 0 {
		return nil, nil, usagef("no database: give --dsn (or $PGTRAIN_DSN) or --source name=dsn")
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
	name  string
	log   *slog.Logger
	bus   *bus.Bus
	pools map[string]*pgxpool.Pool
	close func()
	// startup is --startup-timeout, for the dependencies a role checks after startRole.
	startup time.Duration
}

// startRole parses the flags, then connects what the role needs, waiting up to the startup
// timeout for each; db is nil for roles that never touch PostgreSQL.
func startRole(ctx context.Context, fs *flag.FlagSet, args []string, name string, check func() error, lf *logFlags, nf *natsFlags, db *dbFlags, st *startupTimeout) (*role, error) {
	if err := parseNoArgs(fs, args); err != nil {
		return nil, err
	}
	// A setting out of range is refused before anything connects, not after the wait for
	// PostgreSQL and NATS.
	if check != nil {
		if err := check(); err != nil {
			return nil, err
		}
	}
	log, err := lf.logger(os.Stderr)
	if err != nil {
		return nil, err
	}
	if err := armFaults(log); err != nil {
		return nil, err
	}
	// A wrong NATS auth flag is reported before anything connects.
	if _, err := nf.auth.auth(); err != nil {
		return nil, err
	}
	r := &role{name: name, log: log, close: func() {}}
	if db != nil {
		pools, closePools, err := db.pools(ctx)
		if err != nil {
			return nil, err
		}
		r.pools, r.close = pools, closePools
		if err := waitPostgres(ctx, log, st.duration(), db.dsns(), pools); err != nil {
			r.close()
			return nil, err
		}
	}
	r.startup = st.duration()
	nc, b, err := nf.connect(ctx, "pgtrain-"+name, log, r.startup)
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
