package main

import (
	"context"
	"os"

	"pgtrain/internal/devenv"
)

func runNATS(ctx context.Context, args []string) error {
	fs := newFlagSet("nats", "nats [flags]")
	storeDir := fs.String("store-dir", "pgtrain-data/nats", "JetStream store directory (kept across restarts)")
	port := fs.Int("port", 4222, "client port on 127.0.0.1")
	host := fs.String("host", "127.0.0.1", "interface to listen on")
	var lf logFlags
	lf.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	log, err := lf.logger(os.Stderr)
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
	log.Info("nats-server with JetStream ready", "url", srv.URL, "store_dir", *storeDir)
	<-ctx.Done()
	log.Info("shutting down nats-server")
	srv.Stop()
	return nil
}
