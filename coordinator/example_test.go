package coordinator_test

import (
	"context"
	"log/slog"
	"os"
	"os/signal"

	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/coordinator"
	"pgtrain/internal/bus"
	"pgtrain/internal/pgutil"
)

// Running a coordinator on one source database and a NATS server, until interrupted.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	log := slog.Default()
	pool, err := pgutil.NewPool(ctx, os.Getenv("PGTRAIN_DSN"), 0)
	if err != nil {
		log.Error("source", "error", err)
		return
	}
	defer pool.Close()
	nc, err := bus.Connect("nats://127.0.0.1:4222", "pgtrain-coordinator", log)
	if err != nil {
		log.Error("nats", "error", err)
		return
	}
	defer nc.Close()
	b, err := bus.Ensure(ctx, nc, bus.Limits{})
	if err != nil {
		log.Error("bus", "error", err)
		return
	}
	c, err := coordinator.New(ctx, coordinator.Config{Listen: "127.0.0.1:8080"},
		map[string]*pgxpool.Pool{"": pool}, b, log)
	if err != nil {
		log.Error("coordinator", "error", err)
		return
	}
	if err := c.Run(ctx); err != nil {
		log.Error("coordinator", "error", err)
	}
}
