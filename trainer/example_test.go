package trainer_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/internal/bus"
	"pgtrain/internal/local"
	"pgtrain/internal/pgutil"
	"pgtrain/internal/testenv"
	"pgtrain/model"
	"pgtrain/trainer"
)

// A trainer process: connect to NATS, declare the streams, and train whatever the
// coordinator hands out until the context ends (here, with Once, until one job has ended).
func Example() {
	srv, err := testenv.StartServers(context.Background()) // a throwaway PostgreSQL and NATS
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Stop()
	ctx, cancel := context.WithCancel(context.Background()) // main cancels it on SIGTERM
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
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
	// The coordinator, a fetcher and a preprocessor: each its own process in a cluster.
	cluster, err := local.Start(ctx, local.Options{Sources: map[string]*pgxpool.Pool{"": pool},
		NATSURL: srv.NATSURL, Fetchers: 1, Preprocessors: 1, Log: log})
	if err != nil {
		fmt.Println("cluster:", err)
		return
	}
	defer cluster.Stop()
	job, err := cluster.Client.Submit(ctx, []byte(`{"table": "points", "key": "id",
		"features": [{"column": "x", "scale": "standard"}], "label": {"column": "y"},
		"model": {"layers": [{"type": "dense", "units": 1}]}, "loss": "mse", "epochs": 2}`))
	if err != nil {
		fmt.Println("submit:", err)
		return
	}

	nc, err := bus.Connect(srv.NATSURL, "pgtrain-trainer", log)
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
	out, err := os.MkdirTemp("", "pgtrain-models-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(out)
	t, err := trainer.New(trainer.Config{TrainerID: "trainer-1", OutDir: out, Once: true},
		b, cluster.WorkerClient, log)
	if err != nil {
		fmt.Println("config:", err)
		return
	}
	fmt.Println("trainer stopped:", t.Run(ctx))
	st, err := cluster.Client.Job(ctx, job.ID)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("job", st.State, "after epoch", st.Trainer.Epoch, "of", st.Epochs, "on", st.Rows, "rows")
	// The TF.js Layers model that TensorFlow.js and model.LoadTFJS read.
	if _, err := model.LoadTFJS(filepath.Join(out, job.ID, "model")); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("model exported")
	// Output:
	// trainer stopped: <nil>
	// job done after epoch 2 of 2 on 150 rows
	// model exported
}

func ExampleConfig_WithDefaults() {
	cfg := trainer.Config{TrainerID: "trainer-1"}.WithDefaults()
	fmt.Println(cfg.OutDir, cfg.Poll, cfg.Prefetch, cfg.ReadBackoff, cfg.Validate())
	// Output: pgtrain-data/models 200ms 2 50ms <nil>
}
