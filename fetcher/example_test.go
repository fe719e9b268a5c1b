package fetcher_test

import (
	"context"
	"log/slog"
	"os"
	"os/signal"

	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/coordinator/client"
	"pgtrain/fetcher"
	"pgtrain/internal/bus"
	"pgtrain/internal/pgutil"
)

// A fetcher process: one pool per source, the bus, the coordinator client; run until
// interrupted, then the lease in hand is handed back.
func ExampleNew() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	pool, err := pgutil.NewPool(ctx, os.Getenv("PGTRAIN_DSN"), 0)
	if err != nil {
		log.Error("postgres", "error", err)
		return
	}
	defer pool.Close()
	nc, err := bus.Connect("nats://127.0.0.1:4222", "pgtrain-fetcher", log)
	if err != nil {
		log.Error("nats", "error", err)
		return
	}
	defer nc.Close()
	b, err := bus.Ensure(ctx, nc, bus.Limits{})
	if err != nil {
		log.Error("streams", "error", err)
		return
	}
	f, err := fetcher.New(fetcher.Config{WorkerID: "fetcher-1"}, map[string]*pgxpool.Pool{"": pool}, b,
		client.New("http://127.0.0.1:8080", log), log)
	if err != nil {
		log.Error("config", "error", err)
		return
	}
	if err := f.Run(ctx); err != nil {
		log.Error("fetcher", "error", err)
	}
}
