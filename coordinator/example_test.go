package coordinator_test

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/coordinator"
	"pgtrain/coordinator/client"
	"pgtrain/internal/bus"
	"pgtrain/internal/pgutil"
	"pgtrain/internal/testenv"
)

// Running a coordinator on one source database and a NATS server until its context ends.
// A job spec is checked against the table before anything is planned.
func Example() {
	srv, err := testenv.StartServers(context.Background()) // a throwaway PostgreSQL and NATS
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Stop()
	ctx, cancel := context.WithCancel(context.Background()) // main cancels it on SIGTERM
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	pool, err := pgutil.NewPool(ctx, srv.DSN, 0)
	if err != nil {
		fmt.Println("source:", err)
		return
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `create table iris (id bigint primary key, sepal float8, species text)`); err != nil {
		fmt.Println(err)
		return
	}
	nc, err := bus.Connect(srv.NATSURL, "pgtrain-coordinator", log)
	if err != nil {
		fmt.Println("nats:", err)
		return
	}
	defer nc.Close()
	b, err := bus.Ensure(ctx, nc, bus.Limits{})
	if err != nil {
		fmt.Println("bus:", err)
		return
	}
	c, err := coordinator.New(ctx, coordinator.Config{Listen: "127.0.0.1:0"},
		map[string]*pgxpool.Pool{"": pool}, b, log)
	if err != nil {
		fmt.Println("coordinator:", err)
		return
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	select {
	case <-c.Ready():
	case err := <-done:
		fmt.Println("coordinator:", err)
		return
	}

	_, err = client.New("http://"+c.Addr(), log).Submit(ctx, []byte(`{
		"table": "iris", "key": "id",
		"features": [{"column": "sepal", "scale": "standard"}, {"column": "petal"}],
		"label": {"column": "species", "encode": "onehot"},
		"model": {"layers": [{"type": "dense", "units": 3, "activation": "softmax"}]},
		"loss": "categorical_crossentropy", "epochs": 1}`))
	fmt.Println(err)
	cancel()
	fmt.Println("stopped:", <-done)
	// Output:
	// coordinator: 400 Bad Request: features[1].column: no column "petal" in public.iris
	// stopped: <nil>
}
