package e2e

import (
	"context"
	"errors"
	"fmt"
	"maps"
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
	testenv.Eventually(t, 4*time.Minute, "job "+id+" to end", func() bool {
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
		return messages.JobEnded(s.State)
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
	st, err := cl.Client.SubmitPrediction(ctx, []byte(body))
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
	testenv.Eventually(t, time.Minute, "RAW, SCORE and READY to be empty", func() bool {
		for _, s := range []string{cl.Bus.Names().RawStream(), cl.Bus.Names().ScoreStream(), cl.Bus.Names().ReadyStream()} {
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

// enginePredictions is engineOutputs of a regression model: its value per key.
func enginePredictions(t *testing.T, pool *pgxpool.Pool, b *bus.Bus, modelID, table string) []scoredRow {
	t.Helper()
	rows := engineOutputs(t, pool, b, modelID, table)
	out := make([]scoredRow, len(rows))
	for i, r := range rows {
		out[i] = scoredRow{id: r.id, value: r.out[0]}
	}
	return out
}

type engineRow struct {
	id  int64
	out []float32
}

// engineOutputs runs the stored model's own forward pass on the rows of table (in key
// order, all in one call), with the model's preprocessing applied by the transform the
// pipeline uses.
func engineOutputs(t *testing.T, pool *pgxpool.Pool, b *bus.Bus, modelID, table string) []engineRow {
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
	// The features only, as a prediction job without evaluation reads them.
	plan := meta.Plan()
	plan.Kind, plan.Label, plan.LabelDim = messages.JobKindPrediction, messages.ColumnPlan{}, 0
	raw := &messages.RawBatch{BatchID: messages.BatchID{JobID: modelID}, Last: true}
	for _, c := range meta.Features {
		raw.Columns = append(raw.Columns, messages.RawColumn{Name: c.Name, Kind: c.RawKind()})
	}
	cols := map[string]*messages.RawColumn{}
	for i := range raw.Columns {
		cols[raw.Columns[i].Name] = &raw.Columns[i]
	}
	rows, err := pool.Query(ctx, fmt.Sprintf("select id, a, b, c::float8, kind from %s order by id", table))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for i := 0; rows.Next(); i++ {
		var (
			id   int64
			a    float32
			bv   float64
			c    *float64
			kind string
		)
		if err := rows.Scan(&id, &a, &bv, &c, &kind); err != nil {
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
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	ready, err := transform.Apply(plan, raw)
	if err != nil {
		t.Fatal(err)
	}
	pred, err := m.Predict(ready.X, ready.Rows())
	if err != nil {
		t.Fatal(err)
	}
	w := m.OutputDim()
	out := make([]engineRow, len(raw.Keys))
	for i, k := range raw.Keys {
		out[i] = engineRow{id: k, out: pred[i*w : (i+1)*w]}
	}
	return out
}

// A model trained by the pipeline scores a held-out table through the pipeline: every key
// once, each value the engine's own forward pass bit for bit, the same with 1 scorer and
// with 3, the model's loss reported since the table holds the label, and RAW, SCORE and READY
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
	var evaluated *messages.PredictionStatus
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
		evaluated = p
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

	// The same job without an output table (pgtrain evaluate) reports the same loss and
	// metrics, summed in the same order, and creates no table.
	tablesBefore := publicTables(t, pool)
	body := fmt.Sprintf(`{"model": %q, "table": "holdout", "evaluate": true, "range_rows": 400, "page_rows": 150}`, modelID)
	ev := predictOnce(t, pool, natsURL, 2, body).Prediction
	if ev.Output != "" || ev.Written.Rows != holdoutRows || ev.Loss == nil || *ev.Loss != *evaluated.Loss || !maps.Equal(ev.Metrics, evaluated.Metrics) {
		t.Fatalf("evaluation %+v (loss %v), want %d rows, no output and the prediction's loss %v and metrics %v",
			ev, ev.Loss, holdoutRows, *evaluated.Loss, evaluated.Metrics)
	}
	if after := publicTables(t, pool); !slices.Equal(after, tablesBefore) {
		t.Fatalf("tables %v after an evaluation, want %v", after, tablesBefore)
	}
}

// publicTables lists the tables of schema public.
func publicTables(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `select relname::text from pg_class where relkind = 'r' and relnamespace = 'public'::regnamespace order by 1`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return tables
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
		{"no output and no evaluation", fmt.Sprintf(`{"model": %q, "table": "holdout"}`, modelID), 400, "output", "evaluate"},
		{"an evaluation of a table without the label", fmt.Sprintf(`{"model": %q, "table": "holdout_missing", "evaluate": true}`, modelID), 400, "table", `"b"`},
		{"output is the scored table", fmt.Sprintf(`{"model": %q, "table": "holdout", "output": "holdout", "mode": "replace"}`, modelID), 400, "output", "scored table"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := cl.Client.SubmitPrediction(ctx, []byte(tt.body))
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
	tables := publicTables(t, pool)
	want := []string{"events", "holdout", "holdout_missing", "holdout_typed", "taken"}
	if !slices.Equal(tables, want) {
		t.Fatalf("tables %v after refused requests, want %v", tables, want)
	}
	var n int
	if err := pool.QueryRow(ctx, "select count(*) from taken").Scan(&n); err != nil || n != 0 {
		t.Fatalf("taken holds %d rows (%v), want 0", n, err)
	}
}

// A classifier writes each row's class, its probability and every class's probability,
// the engine's own softmax outputs; an unseen category takes the out-of-vocabulary slot.
// With evaluate false the label is not read, so a label value the model never saw cannot
// fail the job.
func TestPredictionClassification(t *testing.T) {
	pool, _ := testenv.Pool(t)
	natsURL := testenv.NATS(t)
	ctx := context.Background()
	makeTable(t, pool, 2000)
	makeHoldout(t, pool, "holdout", 700)
	for _, s := range []string{
		`alter table events add column grade text`,
		`update events set grade = case when y > 1 then 'high' when y > 0 then 'mid' else 'low' end`,
		`alter table holdout add column grade text`,
		`update holdout set grade = case when id % 7 = 0 then 'unheard-of' else 'mid' end`,
	} {
		if _, err := pool.Exec(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	out := t.TempDir()
	cl, err := local.Start(ctx, local.Options{
		Sources: map[string]*pgxpool.Pool{"": pool}, NATSURL: natsURL,
		Fetchers: 2, Preprocessors: 2, Scorers: 2, Trainer: true, TrainerCfg: trainer.Config{OutDir: out},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Stop()
	st, err := cl.Client.Submit(ctx, []byte(`{"table": "events", "key": "id",
		"features": [{"column": "a", "scale": "standard"}, {"column": "b", "scale": "minmax"},
		             {"column": "c", "impute": "median", "scale": "standard"}, {"column": "kind", "encode": "onehot"}],
		"label": {"column": "grade", "encode": "index"},
		"model": {"layers": [{"type": "dense", "units": 8, "activation": "relu"}, {"type": "dense", "units": 3, "activation": "softmax"}]},
		"loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"], "epochs": 2, "batch_size": 64, "seed": 3}`))
	if err != nil {
		t.Fatal(err)
	}
	if final := waitJob(t, cl, st.ID); final.State != messages.JobDone {
		t.Fatalf("training job ended %s: %s", final.State, final.Error)
	}
	pst, err := cl.Client.SubmitPrediction(ctx, []byte(fmt.Sprintf(
		`{"model": %q, "table": "holdout", "output": "holdout_classes", "probabilities": true, "evaluate": false, "page_rows": 100}`, st.ID)))
	if err != nil {
		t.Fatal(err)
	}
	final := waitJob(t, cl, pst.ID)
	if final.State != messages.JobDone || final.Prediction.Written.Rows != 700 || final.Prediction.Loss != nil {
		t.Fatalf("prediction job ended %s (%s): %+v; want done, 700 rows, no evaluation", final.State, final.Error, final.Prediction)
	}

	js, err := cl.Bus.ModelFile(ctx, st.ID, bus.ModelJSON)
	if err != nil {
		t.Fatal(err)
	}
	meta, err := model.ReadMeta(js)
	if err != nil {
		t.Fatal(err)
	}
	want := engineOutputs(t, pool, cl.Bus, st.ID, "holdout")
	rows, err := pool.Query(ctx, `select id, class, probability, probabilities from holdout_classes order by id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	i := 0
	for ; rows.Next(); i++ {
		var (
			id    int64
			class string
			prob  float32
			probs []float32
		)
		if err := rows.Scan(&id, &class, &prob, &probs); err != nil {
			t.Fatal(err)
		}
		w := want[i]
		best := 0
		for j, v := range w.out {
			if v > w.out[best] {
				best = j
			}
		}
		if id != w.id || !slices.Equal(probs, w.out) || prob != w.out[best] || class != meta.Classes[best] {
			t.Fatalf("row %d: key %d class %q p=%v %v; the engine says key %d %q %v", i, id, class, prob, probs, w.id, meta.Classes[best], w.out)
		}
	}
	if err := rows.Err(); err != nil || i != len(want) {
		t.Fatalf("%d rows (%v), want %d", i, err, len(want))
	}
}
