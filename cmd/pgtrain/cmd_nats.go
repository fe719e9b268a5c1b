package main

import (
	"context"
	"flag"
	"os"

	"pgtrain/internal/devenv"
	"pgtrain/internal/pgutil"
)

type natsOpts struct {
	storeDir string
	host     string
	port     int
	log      logFlags
}

func natsServerFlags() (*flag.FlagSet, *natsOpts) {
	o := &natsOpts{}
	fs := newFlagSet("nats", "nats [flags]")
	fs.StringVar(&o.storeDir, "store-dir", "pgtrain-data/nats", "JetStream store directory (kept across restarts)")
	fs.IntVar(&o.port, "port", 4222, "client port")
	fs.StringVar(&o.host, "host", "127.0.0.1", "interface to listen on")
	o.log.register(fs)
	return fs, o
}

func runNATS(ctx context.Context, args []string) error {
	fs, o := natsServerFlags()
	if err := parse(fs, args); err != nil {
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
	srv, err := devenv.StartNATS(devenv.NATSOptions{StoreDir: *storeDir, Port: *port, Host: *host})
	if err != nil {
		return err
	}
	log.Info("nats-server with JetStream ready", "url", pgutil.Redact(srv.URL), "store_dir", *storeDir)
	<-ctx.Done()
	log.Info("shutting down nats-server")
	srv.Stop()
	return nil
}
