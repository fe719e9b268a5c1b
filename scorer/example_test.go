package scorer_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/internal/bus"
	"pgtrain/internal/local"
	"pgtrain/internal/pgutil"
	"pgtrain/internal/testenv"
	"pgtrain/messages"
	"pgtrain/scorer"
	"pgtrain/trainer"
)

// A scorer process: one pool per source, the bus, the coordinator client; it writes the
// predictions of every running prediction job until its context ends. Here a model is
// trained on a small table and the scorer writes its predictions for another.
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
insert into points select i, i, 2 * i from generate_series(1, 150) i;
create table new_points (id bigint primary key, x float8);
insert into new_points select i, i / 2.0 from generate_series(1, 40) i`); err != nil {
		fmt.Println(err)
		return
	}
	sources := map[string]*pgxpool.Pool{"": pool}
	// The coordinator, a fetcher, a preprocessor and a trainer: their own processes in a cluster.
	models, err := os.MkdirTemp("", "pgtrain-models-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(models)
	cl, err := local.Start(ctx, local.Options{Sources: sources, NATSURL: srv.NATSURL, Log: log,
		Fetchers: 1, Preprocessors: 1, Trainer: true, TrainerCfg: trainer.Config{OutDir: models}})
	if err != nil {
		fmt.Println("cluster:", err)
		return
	}
	defer cl.Stop()
	train, err := cl.Client.Submit(ctx, []byte(`{"table": "points", "key": "id",
		"features": [{"column": "x", "scale": "standard"}], "label": {"column": "y"},
		"model": {"layers": [{"type": "dense", "units": 1}]}, "loss": "mse", "epochs": 1}`))
	if err != nil {
		fmt.Println("submit:", err)
		return
	}
	if st := wait(ctx, cl, train.ID); st != messages.JobDone {
		fmt.Println("training:", st)
		return
	}

	nc, err := bus.Connect(srv.NATSURL, "pgtrain-scorer", log)
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
	s, err := scorer.New(scorer.Config{ScorerID: "scorer-1"}, sources, b, cl.WorkerClient, log)
	if err != nil {
		fmt.Println("config:", err)
		return
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- s.Run(sctx) }()

	pred, err := cl.Client.SubmitPrediction(ctx, []byte(fmt.Sprintf(`{"model": %q, "table": "new_points", "output": "new_points_scores"}`, train.ID)))
	if err != nil {
		fmt.Println("predict:", err)
		return
	}
	fmt.Println("prediction:", wait(ctx, cl, pred.ID))
	var n int
	if err := pool.QueryRow(ctx, `select count(*) from new_points_scores`).Scan(&n); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("rows written:", n)
	stop()
	fmt.Println("stopped:", <-done)
	// Output:
	// prediction: done
	// rows written: 40
	// stopped: <nil>
}

// wait polls a job until it ends and returns its state.
func wait(ctx context.Context, cl *local.Cluster, id string) string {
	for {
		st, err := cl.Client.Job(ctx, id)
		if err != nil {
			return err.Error()
		}
		if st.State == messages.JobDone || st.State == messages.JobFailed {
			return st.State
		}
		time.Sleep(50 * time.Millisecond) // polling interval of a condition with a deadline
	}
}
