package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime/debug"

	"pgtrain/internal/devenv"
	"pgtrain/internal/pgutil"
)

type natsOpts struct {
	storeDir string
	host     string
	port     int
	memLimit int64
	auth     natsServerAuth
	log      logFlags
}

// natsServerAuth is what the embedded server asks of its clients.
type natsServerAuth struct {
	tokenFile    string
	user         string
	passwordFile string
}

func (a *natsServerAuth) register(fs *flag.FlagSet) {
	fs.StringVar(&a.tokenFile, "auth-token-file", "", "require the token in this file of every client")
	fs.StringVar(&a.user, "auth-user", "", "require this user (with --auth-password-file) of every client")
	fs.StringVar(&a.passwordFile, "auth-password-file", "", "file holding the password of --auth-user")
}

// apply reads the secrets into o.
func (a *natsServerAuth) apply(o *devenv.NATSOptions) error {
	if a.tokenFile != "" && a.user != "" {
		return errors.New("--auth-token-file and --auth-user: choose one")
	}
	if (a.user == "") != (a.passwordFile == "") {
		return errors.New("--auth-user and --auth-password-file go together")
	}
	var err error
	if a.tokenFile != "" {
		if o.Token, err = readSecret("--auth-token-file", a.tokenFile); err != nil {
			return err
		}
	}
	if a.user != "" {
		o.User = a.user
		if o.Password, err = readSecret("--auth-password-file", a.passwordFile); err != nil {
			return err
		}
	}
	return nil
}

func natsServerFlags() (*flag.FlagSet, *natsOpts) {
	o := &natsOpts{}
	fs := newFlagSet("nats", "nats [flags]")
	fs.StringVar(&o.storeDir, "store-dir", "pgtrain-data/nats", "JetStream store directory (kept across restarts)")
	fs.IntVar(&o.port, "port", 4222, "client port")
	fs.StringVar(&o.host, "host", "127.0.0.1", "interface to listen on")
	fs.Int64Var(&o.memLimit, "memory-limit", defaultNATSMemoryLimit,
		"soft limit of the server's Go heap in bytes (the runtime's GOMEMLIMIT, which wins when set); 0 for none")
	o.auth.register(fs)
	o.log.register(fs)
	return fs, o
}

// defaultNATSMemoryLimit bounds the server's RSS whatever the size of the streams. The file
// store keeps each block it wrote or read in the last ten seconds in memory, behind a weak
// pointer the collector may drop: without a limit the heap grows by the blocks a replay
// touches (the whole of READY, 837 MB of RSS at 3M rows in the pipeline benchmark), with
// 256 MiB the collector drops them as the heap reaches it (259 MB at 3M rows).
const defaultNATSMemoryLimit = 256 << 20

// minNATSMemoryLimit leaves room for the messages in flight (RAW's pending pages are tens of
// megabytes): below it the collector would run without pause.
const minNATSMemoryLimit = 64 << 20

func validMemoryLimit(limit int64) error {
	if limit != 0 && limit < minNATSMemoryLimit {
		return fmt.Errorf("--memory-limit %d: want 0 (none) or at least %d bytes", limit, minNATSMemoryLimit)
	}
	return nil
}

// applyMemoryLimit sets the Go runtime's soft memory limit, unless GOMEMLIMIT already did.
func applyMemoryLimit(limit int64) error {
	if err := validMemoryLimit(limit); err != nil {
		return err
	}
	if limit > 0 && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(limit)
	}
	return nil
}

func runNATS(ctx context.Context, args []string) error {
	fs, o := natsServerFlags()
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if err := applyMemoryLimit(o.memLimit); err != nil {
		return err
	}
	storeDir, host, port := &o.storeDir, &o.host, &o.port
	log, err := o.log.logger(os.Stderr)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*storeDir, 0o755); err != nil {
		return err
	}
	nopts := devenv.NATSOptions{StoreDir: *storeDir, Port: *port, Host: *host}
	if err := o.auth.apply(&nopts); err != nil {
		return err
	}
	srv, err := devenv.StartNATS(nopts)
	if err != nil {
		return err
	}
	log.Info("nats-server with JetStream ready", "url", pgutil.Redact(srv.URL), "store_dir", *storeDir,
		"auth", nopts.Token != "" || nopts.User != "")
	<-ctx.Done()
	log.Info("shutting down nats-server")
	srv.Stop()
	return nil
}
