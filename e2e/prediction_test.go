package e2e

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/coordinator"
	"pgtrain/coordinator/client"
	"pgtrain/internal/bus"
	"pgtrain/internal/local"
	"pgtrain/internal/testenv"
	"pgtrain/messages"
	"pgtrain/model"
	"pgtrain/preprocessor/transform"
	"pgtrain/trainer"
)

// makeHoldout creates a table of n rows shaped like makeTable's, with other keys and other
// values: rows the model never saw.
func makeHoldout(t *testing.T, pool *pgxpool.Pool, name string, n int) {
	t.Helper()
	ctx := context.Background()
	for _, s := range []string{
		fmt.Sprintf(`create table %s (id bigint primary key, a real, b double precision, c integer, kind text, y real)`, name),
		`select setseed(0.7)`,
		fmt.Sprintf(`insert into %s
			select 5000000 + i * 3, random()::real, random()*12, case when i %% 13 = 0 then null else (i %% 60) end,
			       (array['red','green','blue','cyan','mauve'])[1 + i %% 5], 0
			from generate_series(1, %d) i`, name, n),
		fmt.Sprintf(`update %s set y = (a*2 - b*0.3 + coalesce(c, 25)*0.01 + case kind when 'red' then 1 else 0 end)::real`, name),
	} {
		if _, err := pool.Exec(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
}

// waitJob waits for a job to end and returns its final status.
func waitJob(t *testing.T, cl *local.Cluster, id string) *messages.JobStatus {
	t.Helper()
	var final *messages.JobStatus
	testenv.Eventually(t, 3*time.Minute, "job "+id+" to end", func() bool {
		select {
		case err := <-cl.Err():
			t.Fatalf("a role failed: %v", err)
		default:
		}
		s, err := cl.Client.Job(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		final = s
		return s.State == messages.JobDone || s.State == messages.JobFailed
	})
	return final
}

// trainModel trains makeTable's job and returns the model's id (its job's).
func trainModel(t *testing.T, pool *pgxpool.Pool, natsURL string) string {
	t.Helper()
	ctx := context.Background()
	out := t.TempDir()
	cl, err := local.Start(ctx, local.Options{
		Sources: map[string]*pgxpool.Pool{"": pool}, NATSURL: natsURL,
		Fetchers: 2, Preprocessors: 1, Trainer: true, TrainerCfg: trainer.Config{OutDir: out},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Stop()
	st, err := cl.Client.Submit(ctx, spec(11, 2))
	if err != nil {
		t.Fatal(err)
	}
	final := waitJob(t, cl, st.ID)
	if final.State != messages.JobDone {
		t.Fatalf("training job %s ended %s: %s", final.ID, final.State, final.Error)
	}
	// The trainer stores the model before it reports the job done.
	if _, err := cl.Bus.ModelFile(ctx, final.ID, bus.ModelJSON); err != nil {
		t.Fatal(err)
	}
	return final.ID
}

// predictOnce runs a prediction job on a cluster of scorers and returns its final status.
func predictOnce(t *testing.T, pool *pgxpool.Pool, natsURL string, scorers int, body string) *messages.JobStatus {
	t.Helper()
	ctx := context.Background()
	cl, err := local.Start(ctx, local.Options{
		Sources: map[string]*pgxpool.Pool{"": pool}, NATSURL: natsURL,
		Fetchers: 2, Preprocessors: 2, Scorers: scorers, Coordinator: coordinator.Config{Window: 3},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Stop()
	st, err := cl.Client.Predict(ctx, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if st.Kind != messages.JobKindPrediction {
		t.Fatalf("kind %q, want %q", st.Kind, messages.JobKindPrediction)
	}
	final := waitJob(t, cl, st.ID)
	if final.State != messages.JobDone {
		t.Fatalf("prediction job %s ended %s: %s", final.ID, final.State, final.Error)
	}
	// The ended job's batches leave both streams.
	testenv.Eventually(t, time.Minute, "RAW and READY to be empty", func() bool {
		for _, s := range []string{cl.Bus.Names().RawStream(), cl.Bus.Names().ReadyStream()} {
			str, err := cl.Bus.JetStream().Stream(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			if str.CachedInfo().State.Msgs != 0 {
				return false
			}
		}
		return true
	})
	return final
}

type scoredRow struct {
	id    int64
	value float32
}

func readScores(t *testing.T, pool *pgxpool.Pool, table string) []scoredRow {
	t.Helper()
	rows, err := pool.Query(context.Background(), fmt.Sprintf("select id, value from %s order by id", table))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []scoredRow
	for rows.Next() {
		var r scoredRow
		if err := rows.Scan(&r.id, &r.value); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// enginePredictions runs the stored model's own forward pass on the rows of table, with the
// model's preprocessing applied by the transform the pipeline uses, in one call.
func enginePredictions(t *testing.T, pool *pgxpool.Pool, b *bus.Bus, modelID, table string) []scoredRow {
	t.Helper()
	ctx := context.Background()
	js, err := b.ModelFile(ctx, modelID, bus.ModelJSON)
	if err != nil {
		t.Fatal(err)
	}
	meta, err := model.ReadMeta(js)
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.LoadTFJSFromMemory(js, func(path string) ([]byte, error) { return b.ModelFile(ctx, modelID, path) })
	if err != nil {
		t.Fatal(err)
	}
	raw := &messages.RawBatch{BatchID: messages.BatchID{JobID: modelID}, Last: true}
	cols := map[string]*messages.RawColumn{}
	for _, c := range append(slices.Clone(meta.Features), meta.Label) {
		raw.Columns = append(raw.Columns, messages.RawColumn{Name: c.Name, Kind: c.RawKind()})
	}
	for i := range raw.Columns {
		cols[raw.Columns[i].Name] = &raw.Columns[i]
	}
	rows, err := pool.Query(ctx, fmt.Sprintf("select id, a, b, c::float8, kind, y from %s order by id", table))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for i := 0; rows.Next(); i++ {
		var (
			id   int64
			a, y float32
			bv   float64
			c    *float64
			kind string
		)
		if err := rows.Scan(&id, &a, &bv, &c, &kind, &y); err != nil {
			t.Fatal(err)
		}
		raw.Keys = append(raw.Keys, id)
		cols["a"].Float32 = append(cols["a"].Float32, a)
		cols["b"].Float64 = append(cols["b"].Float64, bv)
		if c == nil {
			cols["c"].SetNull(i)
			c = new(float64)
		}
		cols["c"].Float64 = append(cols["c"].Float64, *c)
		cols["kind"].Text = append(cols["kind"].Text, kind)
		cols["y"].Float32 = append(cols["y"].Float32, y)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	ready, err := transform.Apply(meta.Plan(), raw)
	if err != nil {
		t.Fatal(err)
	}
	pred, err := m.Predict(ready.X, ready.Rows())
	if err != nil {
		t.Fatal(err)
	}
	out := make([]scoredRow, len(raw.Keys))
	for i, k := range raw.Keys {
		out[i] = scoredRow{id: k, value: pred[i]}
	}
	return out
}

// A model trained by the pipeline scores a held-out table through the pipeline: every key
// once, each value the engine's own forward pass bit for bit, the same with 1 scorer and
// with 3, the model's loss reported since the table holds the label, and RAW and READY
// empty at the end.
func TestPredictionRoundTrip(t *testing.T) {
	pool, _ := testenv.Pool(t)
	natsURL := testenv.NATS(t)
	makeTable(t, pool, 3000)
	const holdoutRows = 2500
	makeHoldout(t, pool, "holdout", holdoutRows)
	modelID := trainModel(t, pool, natsURL)

	var want []scoredRow
	var outputs []string
	for _, scorers := range []int{1, 3} {
		out := fmt.Sprintf("holdout_scores_%d", scorers)
		outputs = append(outputs, out)
		body := fmt.Sprintf(`{"model": %q, "table": "holdout", "output": %q, "range_rows": 400, "page_rows": 150}`, modelID, out)
		st := predictOnce(t, pool, natsURL, scorers, body)
		p := st.Prediction
		if p == nil || p.Written.Rows != holdoutRows || p.RangesScored != st.Ranges || st.Ranges < 4 {
			t.Fatalf("%d scorers: prediction status %+v over %d ranges, want %d rows written in every range", scorers, p, st.Ranges, holdoutRows)
		}
		if p.Loss == nil || *p.Loss <= 0 {
			t.Fatalf("%d scorers: no loss reported on a table that holds the label: %+v", scorers, p)
		}
		var n, distinct int64
		if err := pool.QueryRow(context.Background(), fmt.Sprintf("select count(*), count(distinct id) from %s", out)).Scan(&n, &distinct); err != nil {
			t.Fatal(err)
		}
		if n != holdoutRows || distinct != holdoutRows {
			t.Fatalf("%d scorers: %d rows with %d keys in %s, want %d", scorers, n, distinct, out, holdoutRows)
		}
		if want == nil {
			b := mustBus(t, natsURL)
			want = enginePredictions(t, pool, b, modelID, "holdout")
		}
		got := readScores(t, pool, out)
		if len(got) != len(want) {
			t.Fatalf("%d scorers: %d predictions, want %d", scorers, len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%d scorers: row %d: got %+v, the engine says %+v", scorers, i, got[i], want[i])
			}
		}
	}
	var missing int64
	if err := pool.QueryRow(context.Background(), fmt.Sprintf(`select count(*) from holdout h
		left join %s o on o.id = h.id where o.id is null`, outputs[0])).Scan(&missing); err != nil {
		t.Fatal(err)
	}
	if missing != 0 {
		t.Fatalf("%d keys of holdout are not in %s", missing, outputs[0])
	}
}

func mustBus(t *testing.T, natsURL string) *bus.Bus {
	t.Helper()
	nc, err := bus.Connect(natsURL, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	b, err := bus.Ensure(context.Background(), nc, bus.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Bad prediction requests are refused with a clear 4xx naming what is wrong, and write
// nothing: no job, no output table, the scored table untouched.
func TestPredictionBadInput(t *testing.T) {
	pool, _ := testenv.Pool(t)
	natsURL := testenv.NATS(t)
	makeTable(t, pool, 1500)
	makeHoldout(t, pool, "holdout", 300)
	ctx := context.Background()
	for _, s := range []string{
		`create table holdout_missing as select id, a, c, kind, y from holdout`,
		`alter table holdout_missing add primary key (id)`,
		`create table holdout_typed as select id, a, b::text as b, c, kind from holdout`,
		`alter table holdout_typed add primary key (id)`,
		`create table taken (id bigint primary key, value real)`,
	} {
		if _, err := pool.Exec(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	modelID := trainModel(t, pool, natsURL)
	cl, err := local.Start(ctx, local.Options{Sources: map[string]*pgxpool.Pool{"": pool}, NATSURL: natsURL})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Stop()
	tests := []struct {
		name       string
		body       string
		wantStatus int
		wantField  string
		wantIn     string
	}{
		{"unknown model", `{"model": "nosuch-00000000", "table": "holdout", "output": "s1"}`, 400, "model", "nosuch-00000000"},
		{"missing column", fmt.Sprintf(`{"model": %q, "table": "holdout_missing", "output": "s2"}`, modelID), 400, "table", `"b"`},
		{"mistyped column", fmt.Sprintf(`{"model": %q, "table": "holdout_typed", "output": "s3"}`, modelID), 400, "table", `"b"`},
		{"existing output, mode create", fmt.Sprintf(`{"model": %q, "table": "holdout", "output": "taken"}`, modelID), 409, "output", "taken"},
		{"hostile output name", fmt.Sprintf(`{"model": %q, "table": "holdout", "output": "s4\"; drop table holdout; --"}`, modelID), 400, "output", "drop table"},
		{"quoted output name", fmt.Sprintf(`{"model": %q, "table": "holdout", "output": "\"Holdout\".x"}`, modelID), 400, "output", "Holdout"},
		{"unknown mode", fmt.Sprintf(`{"model": %q, "table": "holdout", "output": "s5", "mode": "merge"}`, modelID), 400, "mode", "merge"},
		{"output is the scored table", fmt.Sprintf(`{"model": %q, "table": "holdout", "output": "holdout", "mode": "replace"}`, modelID), 400, "output", "scored table"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := cl.Client.Predict(ctx, []byte(tt.body))
			var ae *client.APIError
			if !errors.As(err, &ae) || ae.Status != tt.wantStatus || ae.Field != tt.wantField || !strings.Contains(ae.Message, tt.wantIn) {
				t.Fatalf("got %v (%+v), want %d on field %q mentioning %s", err, ae, tt.wantStatus, tt.wantField, tt.wantIn)
			}
		})
	}
	jobs, err := cl.Client.Jobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		if j.Kind == messages.JobKindPrediction {
			t.Fatalf("prediction job %s after refused requests, want none", j.ID)
		}
	}
	rows, err := pool.Query(ctx, `select relname::text from pg_class where relkind = 'r' and relnamespace = 'public'::regnamespace order by 1`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"events", "holdout", "holdout_missing", "holdout_typed", "taken"}
	if !slices.Equal(tables, want) {
		t.Fatalf("tables %v after refused requests, want %v", tables, want)
	}
	var n int
	if err := pool.QueryRow(ctx, "select count(*) from taken").Scan(&n); err != nil || n != 0 {
		t.Fatalf("taken holds %d rows (%v), want 0", n, err)
	}
}
