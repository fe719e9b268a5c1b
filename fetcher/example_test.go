package fetcher_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"pgtrain/fetcher"
	"pgtrain/internal/bus"
	"pgtrain/internal/local"
	"pgtrain/internal/pgutil"
	"pgtrain/internal/testenv"
	"pgtrain/messages"
)

// A fetcher process: one pool per source, the bus, the coordinator client; it runs until its
// context ends, then hands back the lease in hand. Here it reads the one range of a job.
func ExampleNew() {
	srv, err := testenv.StartServers(context.Background()) // a throwaway PostgreSQL and NATS
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithCancel(context.Background()) // main cancels it on SIGTERM
	defer cancel()
	pool, err := pgutil.NewPool(ctx, srv.DSN, 0)
	if err != nil {
		fmt.Println("postgres:", err)
		return
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `create table points (id bigint primary key, x float8, y float8);
insert into points select i, i, 2 * i from generate_series(1, 150) i`); err != nil {
		fmt.Println(err)
		return
	}
	sources := map[string]*pgxpool.Pool{"": pool}
	// The coordinator, which plans the job and hands out the leases: its own process in a cluster.
	coord, err := local.Start(ctx, local.Options{Sources: sources, NATSURL: srv.NATSURL, Log: log})
	if err != nil {
		fmt.Println("coordinator:", err)
		return
	}
	defer coord.Stop()
	if _, err := coord.Client.Submit(ctx, []byte(`{"table": "points", "key": "id",
		"features": [{"column": "x"}], "label": {"column": "y"},
		"model": {"layers": [{"type": "dense", "units": 1}]}, "loss": "mse", "epochs": 1}`)); err != nil {
		fmt.Println("submit:", err)
		return
	}

	nc, err := bus.Connect(srv.NATSURL, "pgtrain-fetcher", log)
	if err != nil {
		fmt.Println("nats:", err)
		return
	}
	defer nc.Close()
	b, err := bus.Ensure(ctx, nc, bus.Limits{})
	if err != nil {
		fmt.Println("streams:", err)
		return
	}
	f, err := fetcher.New(fetcher.Config{WorkerID: "fetcher-1"}, sources, b, coord.WorkerClient, log)
	if err != nil {
		fmt.Println("config:", err)
		return
	}
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()

	// The pages land in RAW, where the preprocessors' consumer takes them.
	cons, err := b.Raw.Consumer(ctx, messages.PreprocDurable)
	if err != nil {
		fmt.Println(err)
		return
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(time.Minute))
	if err != nil {
		fmt.Println(err)
		return
	}
	page, err := messages.DecodeRaw(msg.Data())
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("range %d page %d: %d rows, keys %d to %d, last %v\n",
		page.Range, page.Page, len(page.Keys), page.Keys[0], page.Keys[len(page.Keys)-1], page.Last)
	cancel()
	fmt.Println("stopped:", <-done)
	// Output:
	// range 0 page 0: 150 rows, keys 1 to 150, last true
	// stopped: <nil>
}
