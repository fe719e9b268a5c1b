package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/coordinator"
	"pgtrain/coordinator/dashboard"
	"pgtrain/internal/bus"
	"pgtrain/internal/demo"
	"pgtrain/internal/devenv"
	"pgtrain/internal/local"
	"pgtrain/internal/pgutil"
	"pgtrain/messages"
	"pgtrain/trainer"
)

type upOpts struct {
	dsn           string
	natsURL       string
	natsPrefix    prefixFlag
	natsAuth      natsAuthFlags
	dataDir       string
	outDir        string
	listen        string
	fetchers      int
	preprocessors int
	scorers       int
	trainers      int
	readyMaxBytes int64
	spec          string
	demo          bool
	demoRows      int
	demoEpochs    int
	log           logFlags

	startup startupTimeout
}

func upFlags() (*flag.FlagSet, *upOpts) {
	o := &upOpts{}
	fs := newFlagSet("up", "up [flags]")
	fs.StringVar(&o.dsn, "dsn", "", "PostgreSQL to read; empty starts a throwaway cluster from the local server binaries")
	fs.StringVar(&o.natsURL, "nats-url", "", "NATS server to use; empty starts an embedded one that requires a token generated for this run")
	registerPrefix(fs, &o.natsPrefix)
	o.natsAuth.register(fs)
	fs.StringVar(&o.dataDir, "data-dir", "", "keep the embedded NATS store (and the throwaway cluster) here, and write the user token to user.token in it; empty uses a temporary directory removed on exit")
	fs.StringVar(&o.outDir, "out-dir", "pgtrain-data/models", "where models, checkpoints and histories are written")
	fs.StringVar(&o.listen, "listen", coordinator.DefaultListen, "HTTP address of the coordinator (use 127.0.0.1:0 for any free port)")
	fs.IntVar(&o.fetchers, "fetchers", 3, "fetcher workers")
	fs.IntVar(&o.preprocessors, "preprocessors", 2, "preprocessor workers")
	fs.IntVar(&o.trainers, "trainers", 1, "trainers (each trains one job, or one variant of a sweep, at a time)")
	fs.IntVar(&o.scorers, "scorers", 2, "scorer workers (they write the predictions of prediction jobs)")
	fs.Int64Var(&o.readyMaxBytes, "ready-max-bytes", bus.DefaultReadyMaxBytes, "byte limit of the READY stream")
	fs.StringVar(&o.spec, "spec", "", "submit this job spec (JSON or YAML), follow it and exit when it ends")
	fs.BoolVar(&o.demo, "demo", false, "create the demo table, train on it, and exit when done")
	fs.IntVar(&o.demoRows, "demo-rows", 1_000_000, "rows in the demo table")
	fs.IntVar(&o.demoEpochs, "demo-epochs", 5, "epochs of the demo job")
	// The roles' own logs are for operators; here the progress lines matter more.
	o.log.level = "warn"
	o.log.register(fs)
	o.startup.register(fs)
	return fs, o
}

func runUp(ctx context.Context, args []string) error {
	fs, o := upFlags()
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if o.demo && o.spec != "" {
		return usagef("--demo and --spec: choose one")
	}
	if o.trainers < 1 {
		return usagef("--trainers %d: at least 1", o.trainers)
	}
	log, err := o.log.logger(os.Stderr)
	if err != nil {
		return err
	}
	env, err := startEnv(ctx, o, log)
	if err != nil {
		return err
	}
	defer env.stop()

	cluster, err := local.Start(ctx, local.Options{
		Sources:       map[string]*pgxpool.Pool{"": env.pool},
		NATSURL:       env.natsURL,
		NATSAuth:      env.auth,
		Fetchers:      o.fetchers,
		Preprocessors: o.preprocessors,
		Scorers:       o.scorers,
		Trainer:       true,
		Trainers:      o.trainers,
		Coordinator:   coordinator.Config{Listen: o.listen},
		TrainerCfg:    trainer.Config{TrainerID: "up-trainer", OutDir: o.outDir},
		Limits:        bus.Limits{Prefix: string(o.natsPrefix), ReadyMaxBytes: o.readyMaxBytes},
		Log:           log,
	})
	if err != nil {
		return err
	}
	defer cluster.Stop()
	url, c := cluster.URL(), cluster.Client
	tokenPath, err := writeSecretFile(env.dir, userTokenFile, cluster.UserToken())
	if err != nil {
		return err
	}
	// The signed-in link holds the token, so it goes to a file like the token, never to the
	// terminal (whose output ends up in CI logs and scrollback).
	linkPath, err := writeSecretFile(env.dir, dashboardLinkFile, dashboardLink(url, cluster.UserToken()))
	if err != nil {
		return err
	}
	fmt.Printf("authentication is on: a user token (scopes read, submit, data, predict) is in %s\n", tokenPath)
	fmt.Printf("dashboard: %s%s (a link signed in with the token is in %s)\n", url, dashboard.Path, linkPath)

	var spec []byte
	switch {
	case o.demo:
		fmt.Printf("creating the demo table %s with %d rows...\n", demo.Table, o.demoRows)
		start := time.Now()
		if err := demo.CreateTable(ctx, env.pool, o.demoRows); err != nil {
			return err
		}
		meanLoss, err := demo.MeanLoss(ctx, env.pool)
		if err != nil {
			return err
		}
		fmt.Printf("created in %.1fs; predicting the mean label would give loss (mse) = %.4f\n", time.Since(start).Seconds(), meanLoss)
		spec = demo.Spec(o.demoEpochs)
	case o.spec != "":
		if spec, err = readSpec(o.spec); err != nil {
			return err
		}
	default:
		fmt.Print(upBanner(url, env.natsURL, tokenPath))
		select {
		case <-ctx.Done():
			return nil
		case err := <-cluster.Err():
			return err
		}
	}

	st, err := c.Submit(ctx, spec)
	if err != nil {
		return err
	}
	fmt.Printf("submitted job %s: %d rows in %d key ranges, %d epochs (replay from READY: %v)\n", st.ID, st.Rows, st.Ranges, st.Epochs, st.Replay)
	final, err := follow(ctx, c, st.ID, os.Stdout, 2*time.Second)
	if err != nil {
		if ctx.Err() != nil {
			fmt.Println("interrupted; shutting down")
			return nil
		}
		return err
	}
	if final.State != messages.JobDone {
		return exitError{code: 1, msg: fmt.Sprintf("job %s %s: %s", final.ID, final.State, final.Error)}
	}
	fmt.Println(finalLine(final, filepath.Join(o.outDir, filepath.FromSlash(final.ModelPath))))
	return nil
}

// upBanner says where the cluster listens; a --nats-url with a password shows it masked.
func upBanner(coordinatorURL, natsURL, tokenPath string) string {
	return fmt.Sprintf("pgtrain is up: coordinator %s, NATS %s\nsubmit jobs with: pgtrain submit --coordinator %s --coordinator-token-file %s SPEC\nCtrl-C stops.\n",
		pgutil.Redact(coordinatorURL), pgutil.Redact(natsURL), pgutil.Redact(coordinatorURL), tokenPath)
}

// dashboardLink opens the coordinator's dashboard signed in: the token is in the fragment,
// which the browser keeps to itself (a query string would reach the server's logs).
func dashboardLink(coordinatorURL, token string) string {
	return coordinatorURL + dashboard.Path + "#" + url.Values{"token": {token}}.Encode()
}

// upEnv is the infrastructure `pgtrain up` runs on.
type upEnv struct {
	pg      *devenv.Postgres
	nats    *devenv.NATS
	natsURL string
	auth    bus.Auth // what the roles present to NATS
	pool    *pgxpool.Pool
	dir     string // --data-dir, or tmp
	tmp     string
}

func startEnv(ctx context.Context, o *upOpts, log *slog.Logger) (*upEnv, error) {
	if o.natsURL == "" && o.natsAuth.set() {
		return nil, errors.New("the --nats-creds, --nats-nkey, --nats-user, --nats-token-file and --nats-tls-* flags are for a server given with --nats-url; the embedded one makes its own token")
	}
	auth, err := o.natsAuth.auth()
	if err != nil {
		return nil, err
	}
	env := &upEnv{natsURL: o.natsURL, auth: auth}
	if o.natsURL != "" {
		// The roles connect in local.Start, which waits for ever: look first, with a deadline.
		nc, err := bus.ConnectAuth(o.natsURL, "pgtrain-up", log, auth)
		if err != nil {
			return nil, err
		}
		err = waitNATS(ctx, log, o.startup.duration(), o.natsURL, nc)
		nc.Close()
		if err != nil {
			return nil, err
		}
	}
	ok := false
	defer func() {
		if !ok {
			env.stop()
		}
	}()
	dir := o.dataDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "pgtrain-up-")
		if err != nil {
			return nil, err
		}
		env.tmp, dir = tmp, tmp
		// The PostgreSQL server runs as its own user when pgtrain runs as root: it must be
		// able to reach its directory inside this one.
		if err := os.Chmod(tmp, 0o755); err != nil {
			return nil, err
		}
	}
	env.dir = dir
	if o.dsn == "" && o.dataDir != "" {
		// Before the NATS store is made in it: the throwaway cluster's server must get in.
		if err := devenv.MakeClusterParent(dir); err != nil {
			return nil, fmt.Errorf("--data-dir: %w", err)
		}
	}
	if env.natsURL == "" {
		// Even on loopback, other local users must not reach the bus: only this process's
		// roles get the token, and it is never printed.
		token, err := coordinator.GenerateToken()
		if err != nil {
			return nil, err
		}
		n, err := devenv.StartNATS(devenv.NATSOptions{StoreDir: filepath.Join(dir, "nats"), Token: token})
		if err != nil {
			return nil, err
		}
		env.nats, env.natsURL, env.auth = n, n.URL, bus.Auth{Token: token}
		log.Info("embedded nats-server ready", "url", pgutil.Redact(n.URL))
	}
	dsn := o.dsn
	if dsn == "" {
		fmt.Println("starting a throwaway PostgreSQL cluster...")
		pg, err := devenv.StartPostgres(ctx, devenv.PostgresOptions{Dir: filepath.Join(dir, "postgres")})
		if err != nil {
			return nil, err
		}
		env.pg, dsn = pg, pg.DSN
		fmt.Printf("PostgreSQL is up: %s (data in %s)\n", pgutil.Redact(dsn), pg.DataDir)
	}
	pool, err := pgutil.NewPool(ctx, dsn, int32(o.fetchers+o.scorers+4))
	if err != nil {
		return nil, err
	}
	env.pool = pool
	if o.dsn != "" {
		if err := waitPostgres(ctx, log, o.startup.duration(), map[string]string{"": dsn}, map[string]*pgxpool.Pool{"": pool}); err != nil {
			return nil, err
		}
	}
	ok = true
	return env, nil
}

// userTokenFile and dashboardLinkFile are where `up` writes the user token and the
// dashboard link signed in with it, in its data directory.
const (
	userTokenFile     = "user.token"
	dashboardLinkFile = "dashboard.url"
)

// writeSecretFile writes a secret to name in dir (readable by its owner only) and returns
// the file's path.
func writeSecretFile(dir, name, secret string) (string, error) {
	path, err := filepath.Abs(filepath.Join(dir, name))
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("writing %s: %w", name, err)
	}
	// Remove first: WriteFile keeps the mode of a file that exists.
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("writing %s: %w", name, err)
	}
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("writing %s: %w", name, err)
	}
	return path, nil
}

func (e *upEnv) stop() {
	if e.pool != nil {
		e.pool.Close()
	}
	if e.pg != nil {
		e.pg.Stop()
	}
	if e.nats != nil {
		e.nats.Stop()
	}
	if e.tmp != "" {
		os.RemoveAll(e.tmp)
	}
}
