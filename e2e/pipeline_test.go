package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/coordinator"
	"pgtrain/coordinator/client"
	"pgtrain/internal/bus"
	"pgtrain/internal/demo"
	"pgtrain/internal/devenv"
	"pgtrain/internal/local"
	"pgtrain/internal/testenv"
	"pgtrain/messages"
	"pgtrain/trainer"
)

// makeTable creates a table of n rows with numeric, nullable and categorical features and a
// label that depends on them. Keys are sparse and skewed so ranges are not trivial.
func makeTable(t *testing.T, pool *pgxpool.Pool, n int) {
	t.Helper()
	ctx := context.Background()
	for _, s := range []string{
		`create table events (
			id bigint primary key, a real, b double precision, c integer, kind text, y real)`,
		`select setseed(0.1)`,
		fmt.Sprintf(`insert into events
			select case when i %% 4 = 0 then i * 1000 else i end,
			       random()::real, random()*10, case when i %% 17 = 0 then null else (i %% 50) end,
			       (array['red','green','blue','cyan'])[1 + i %% 4], 0
			from generate_series(1, %d) i`, n),
		`update events set y = (a*2 - b*0.3 + coalesce(c, 25)*0.01 + case kind when 'red' then 1 else 0 end)::real`,
		`analyze events`,
	} {
		if _, err := pool.Exec(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
}

// spec is the job the tests run on makeTable's table.
func spec(seed int64, epochs int) []byte {
	return demo.Job{
		Table: "events", Key: "id",
		Features: []messages.FeatureSpec{
			{Column: "a", Scale: "standard"},
			{Column: "b", Scale: "minmax"},
			{Column: "c", Impute: "median", Scale: "standard"},
			{Column: "kind", Encode: "onehot"},
		},
		Label:        "y",
		Layers:       []demo.Layer{demo.Dense(16, "relu", "h"), demo.Dropout(0.1, "drop"), demo.Dense(1, "", "out")},
		LearningRate: 0.01, Epochs: epochs, BatchSize: 100, Seed: seed,
		RangeRows: 7000, PageRows: 1500, ValidationSplit: 0.2,
	}.JSON()
}

// sqlChecksum is the table's key checksum computed by SQL alone.
func sqlChecksum(t *testing.T, pool *pgxpool.Pool) messages.KeyChecksum {
	t.Helper()
	var rows int64
	var sum, sumSq string
	err := pool.QueryRow(context.Background(), `select count(*),
		(sum(id::numeric) % 18446744073709551616 + 18446744073709551616) % 18446744073709551616,
		(sum(id::numeric * id::numeric) % 18446744073709551616)
		from events`).Scan(&rows, &sum, &sumSq)
	if err != nil {
		t.Fatal(err)
	}
	parse := func(s string) uint64 {
		v, ok := new(big.Int).SetString(s, 10)
		if !ok || !v.IsUint64() {
			t.Fatalf("checksum %q is not a uint64", s)
		}
		return v.Uint64()
	}
	return messages.KeyChecksum{Rows: rows, Sum: parse(sum), SumSq: parse(sumSq)}
}

type run struct {
	status  *messages.JobStatus
	weights []byte
	elapsed time.Duration
	out     string // the trainer's out dir
}

func runJob(t *testing.T, pool *pgxpool.Pool, natsURL string, fetchers, preprocs int, readyMaxBytes int64, body []byte) run {
	t.Helper()
	return runJobAuth(t, pool, natsURL, bus.Auth{}, fetchers, preprocs, readyMaxBytes, body)
}

func runJobAuth(t *testing.T, pool *pgxpool.Pool, natsURL string, auth bus.Auth, fetchers, preprocs int, readyMaxBytes int64, body []byte) run {
	t.Helper()
	ctx := context.Background()
	out := t.TempDir()
	cl, err := local.Start(ctx, local.Options{
		Sources:       map[string]*pgxpool.Pool{"": pool},
		NATSURL:       natsURL,
		NATSAuth:      auth,
		Fetchers:      fetchers,
		Preprocessors: preprocs,
		Trainer:       true,
		TrainerCfg:    trainer.Config{OutDir: out},
		Coordinator:   coordinator.Config{Window: 4},
		Limits:        bus.Limits{ReadyMaxBytes: readyMaxBytes},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Stop()
	// The roles run with tokens, as `pgtrain up` does: a client without one is refused.
	var ae *client.APIError
	if _, err := client.New(cl.URL(), nil).Jobs(ctx); !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
		t.Fatalf("GET /v1/jobs without a token: %v, want 401", err)
	}
	start := time.Now()
	st, err := cl.Client.Submit(ctx, body)
	if err != nil {
		t.Fatal(err)
	}
	final := waitJob(t, cl, st.ID)
	elapsed := time.Since(start)
	if final.State != messages.JobDone {
		t.Fatalf("job %s ended %s: %s", final.ID, final.State, final.Error)
	}
	w, err := os.ReadFile(filepath.Join(out, filepath.FromSlash(final.ModelPath), "group1-shard1of1.bin"))
	if err != nil {
		t.Fatal(err)
	}
	return run{status: final, weights: w, elapsed: elapsed, out: out}
}

// Every row reaches the trainer exactly once per epoch, through 3 fetchers and 2
// preprocessors, whether later epochs re-read PostgreSQL or replay READY.
func TestEveryRowOncePerEpoch(t *testing.T) {
	pool, _ := testenv.Pool(t)
	natsURL := testenv.NATS(t)
	const rows = 60_000
	makeTable(t, pool, rows)
	want := sqlChecksum(t, pool)
	tests := []struct {
		name          string
		readyMaxBytes int64
		wantReplay    bool
	}{
		{"re-read PostgreSQL each epoch", 2 << 20, false},
		{"replay READY", 1 << 30, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runJob(t, pool, natsURL, 3, 2, tt.readyMaxBytes, spec(7, 3))
			if r.status.Replay != tt.wantReplay {
				t.Fatalf("replay = %v, want %v", r.status.Replay, tt.wantReplay)
			}
			if len(r.status.Results) != 3 {
				t.Fatalf("%d epoch results, want 3", len(r.status.Results))
			}
			for _, e := range r.status.Results {
				seen := e.Seen
				seen.Merge(e.SeenValid)
				if seen != want {
					t.Fatalf("epoch %d: the trainer saw %+v (train %+v + validation %+v), SQL says %+v",
						e.Epoch, seen, e.Seen, e.SeenValid, want)
				}
				if e.SeenValid.Rows == 0 || e.ValLoss == nil {
					t.Fatalf("epoch %d: no validation rows or loss", e.Epoch)
				}
			}
			first, last := r.status.Results[0].Loss, r.status.Results[2].Loss
			if !(last < first) {
				t.Fatalf("loss did not fall: epoch 1 %.4f, epoch 3 %.4f", first, last)
			}
			t.Logf("%d rows × 3 epochs in %s: %.0f rows/s end to end (first epoch %.0f rows/s as the trainer measured)",
				rows, r.elapsed.Round(time.Millisecond), float64(3*rows)/r.elapsed.Seconds(), r.status.Results[0].RowsPerSecond)
		})
	}
}

// The trained weights are a pure function of (data, spec, seed): the same with 1 fetcher and
// 1 preprocessor as with 3 and 2, bit for bit; another seed gives other weights.
func TestSameSeedSameWeightsWhateverTheWorkers(t *testing.T) {
	pool, _ := testenv.Pool(t)
	natsURL := testenv.NATS(t)
	makeTable(t, pool, 30_000)
	one := runJob(t, pool, natsURL, 1, 1, 2<<20, spec(11, 2))
	three := runJob(t, pool, natsURL, 3, 2, 2<<20, spec(11, 2))
	if len(one.weights) == 0 || !bytes.Equal(one.weights, three.weights) {
		t.Fatalf("weights differ between 1 and 3 fetchers (%d and %d bytes)", len(one.weights), len(three.weights))
	}
	for i := range one.status.Results {
		if one.status.Results[i].Loss != three.status.Results[i].Loss {
			t.Fatalf("epoch %d loss %v vs %v", i, one.status.Results[i].Loss, three.status.Results[i].Loss)
		}
	}
	other := runJob(t, pool, natsURL, 3, 2, 2<<20, spec(12, 2))
	if bytes.Equal(one.weights, other.weights) {
		t.Fatal("another seed gave the same weights")
	}
}

// The weights do not depend on how the rows lie on disk either: CLUSTER on another column
// rewrites the table in another order, and the same job trains to the same bits.
func TestSameWeightsWhateverThePhysicalOrder(t *testing.T) {
	pool, _ := testenv.Pool(t)
	natsURL := testenv.NATS(t)
	makeTable(t, pool, 20_000)
	before := runJob(t, pool, natsURL, 2, 1, 2<<20, spec(11, 1))
	ctx := context.Background()
	for _, s := range []string{`create index events_b on events (b)`, `cluster events using events_b`, `analyze events`} {
		if _, err := pool.Exec(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	after := runJob(t, pool, natsURL, 2, 1, 2<<20, spec(11, 1))
	if len(before.weights) == 0 || !bytes.Equal(before.weights, after.weights) {
		t.Fatalf("weights differ after CLUSTER (%d and %d bytes)", len(before.weights), len(after.weights))
	}
}

// Every role works over a bus that requires a token, to the same weights as over an open
// one; a cluster without the token is refused at start.
func TestPipelineOverATokenProtectedBus(t *testing.T) {
	pool, _ := testenv.Pool(t)
	makeTable(t, pool, 20_000)
	open := runJob(t, pool, testenv.NATS(t), 2, 2, 2<<20, spec(21, 2))

	n, err := devenv.StartNATS(devenv.NATSOptions{StoreDir: t.TempDir(), Token: "e2e-bus-token"})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := local.Start(ctx, local.Options{Sources: map[string]*pgxpool.Pool{"": pool}, NATSURL: n.URL})
	if err == nil {
		cl.Stop()
		t.Fatal("a cluster without the token started")
	}
	if !strings.Contains(strings.ToLower(err.Error()), "authorization violation") {
		t.Fatalf("without the token: err = %v, want an authorization violation", err)
	}
	guarded := runJobAuth(t, pool, n.URL, bus.Auth{Token: "e2e-bus-token"}, 2, 2, 2<<20, spec(21, 2))
	if len(open.weights) == 0 || !bytes.Equal(open.weights, guarded.weights) {
		t.Fatalf("weights differ between the open and the token-protected bus (%d and %d bytes)", len(open.weights), len(guarded.weights))
	}
}

// A bad row (a NULL where the plan saw none, written after planning) fails the job with a
// message that names the row key and the column. The coordinator's window keeps the range
// with that row unread until the trainer starts, so the update lands before the read.
func TestBadRowFailsTheJobNamingKeyAndColumn(t *testing.T) {
	ctx := context.Background()
	pool, _ := testenv.Pool(t)
	natsURL := testenv.NATS(t)
	makeTable(t, pool, 20_000)
	cl, err := local.Start(ctx, local.Options{
		Sources: map[string]*pgxpool.Pool{"": pool}, NATSURL: natsURL,
		Fetchers: 2, Preprocessors: 2, Coordinator: coordinator.Config{Window: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Stop()
	st, err := cl.Client.Submit(ctx, spec(1, 1))
	if err != nil {
		t.Fatal(err)
	}
	plan, err := cl.Client.Plan(ctx, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	order := plan.EpochOrder(0)
	last := plan.Ranges[order[len(order)-1]]
	var key int64
	if err := pool.QueryRow(ctx, "select id from events where id between $1 and $2 order by id limit 1", last.Lo, last.Hi).Scan(&key); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "update events set a = null where id = $1", key); err != nil {
		t.Fatal(err)
	}
	tr, err := trainer.New(trainer.Config{TrainerID: "t", OutDir: t.TempDir(), Once: true}, cl.Bus, cl.WorkerClient, nil)
	if err != nil {
		t.Fatal(err)
	}
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go tr.Run(tctx)
	var final *messages.JobStatus
	testenv.Eventually(t, time.Minute, "the job to end", func() bool {
		final, err = cl.Client.Job(ctx, st.ID)
		return err == nil && (final.State == messages.JobFailed || final.State == messages.JobDone)
	})
	t.Logf("job ended: %s", final.Error)
	if final.State != messages.JobFailed || !strings.Contains(final.Error, fmt.Sprint(key)) || !strings.Contains(final.Error, `"a"`) {
		t.Fatalf("job ended %s with %q; want failed naming key %d and column \"a\"", final.State, final.Error, key)
	}
}
