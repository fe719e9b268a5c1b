package e2e

import (
	"context"
	"encoding/json"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/coordinator"
	"pgtrain/fetcher"
	"pgtrain/internal/demo"
	"pgtrain/internal/local"
	"pgtrain/internal/testenv"
	"pgtrain/messages"
	"pgtrain/model"
	"pgtrain/preprocessor/transform"
	"pgtrain/scorer"
	"pgtrain/trainer"
)

// typedTable has a column of every type pgtrain reads besides plain numbers, with NULLs,
// NaN and ±Infinity (never in keys 1..20, which the online check sends as JSON).
const typedTable = `
create table typed_e2e (id int primary key, flag bool, day date, at timestamp, atz timestamptz,
	emb real[], vec float8[], tag text, x float8, y float8);
insert into typed_e2e
select i, i % 3 = 0, date '2021-01-01' + i % 700, timestamp '2024-01-01' + i * interval '1 hour 7 minutes',
	timestamptz '2023-06-01 00:00+00' + i * interval '5 hours 3 seconds',
	case when i % 17 = 0 then null else array[sin(i), cos(i), i % 5]::real[] end,
	array[i % 11, (i % 13) * 0.5]::float8[], 'user-' || i % 97,
	case i % 50 when 25 then 'NaN' when 26 then 'Infinity' when 27 then '-Infinity' else (i % 23)::float8 end,
	(i % 3 = 0)::int + (i % 11) * 0.1 + extract(hour from timestamp '2024-01-01' + i * interval '1 hour 7 minutes') / 24
from generate_series(1, 1500) i;
analyze typed_e2e`

// TestColumnTypesEndToEnd trains on boolean, date, timestamp (cyclical), timestamptz, real[]
// and float8[] columns, a hashed text column and a float8 column with NaN and ±Infinity
// (clipped), then checks that online prediction equals the engine on the rows as the
// fetchers read them (bit for bit), that the README's TF.js snippet agrees (within 1e-6),
// and that a batch prediction job over the same table writes the same values.
func TestColumnTypesEndToEnd(t *testing.T) {
	pool, _ := testenv.Pool(t)
	natsURL := testenv.NATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := pool.Exec(ctx, typedTable); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	cl, err := local.Start(ctx, local.Options{
		Sources: map[string]*pgxpool.Pool{"": pool}, NATSURL: natsURL,
		Fetchers: 2, Preprocessors: 1, Scorers: 1, ScorerCfg: scorer.Config{},
		Trainer: true, TrainerCfg: trainer.Config{OutDir: out},
		Coordinator: coordinator.Config{},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Stop()
	spec := demo.Job{
		Table: "typed_e2e", Key: "id",
		Features: []messages.FeatureSpec{
			{Column: "flag"}, {Column: "day", Scale: "minmax"}, {Column: "at", Encode: "cyclical"},
			{Column: "atz", Scale: "standard"}, {Column: "emb", Impute: "mean", Scale: "standard"}, {Column: "vec", Scale: "minmax"},
			{Column: "tag", Encode: "hash", Buckets: 16}, {Column: "x", NonFinite: "clip", Impute: "median", Scale: "standard"},
		},
		Label:  "y",
		Layers: []demo.Layer{demo.Dense(8, "relu", "hidden"), demo.Dense(1, "", "output")},
		Epochs: 2, BatchSize: 32, Seed: 3, RangeRows: 400, PageRows: 20, LearningRate: 0.01,
	}.JSON()
	st, err := cl.Client.Submit(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	final := waitJob(t, cl, st.ID)
	if final.State != messages.JobDone {
		t.Fatalf("job %s ended %s: %s", st.ID, final.State, final.Error)
	}
	plan, err := cl.Client.Plan(ctx, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	if x := plan.Features[7].Stats; x.NonFinite != 90 || x.Count != 1410 || x.Min != 0 || x.Max != 22 {
		t.Fatalf("x statistics %+v: want 90 non-finite values of 1500, the rest in [0, 22]", x)
	}
	if plan.InputDim != 1+1+6+1+3+2+16+1 {
		t.Fatalf("input_dim %d", plan.InputDim)
	}

	// The first page as a fetcher reads it (keys 1..20), and the same rows as JSON.
	rr, err := fetcher.NewRangeReader(pool, plan, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	page, err := rr.ReadPage(ctx, 0, plan.Ranges[0], 0, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if page.Batch.Rows() != 20 || page.Batch.Keys[19] != 20 {
		t.Fatalf("page 0 has keys %v", page.Batch.Keys)
	}
	// The page reads the label too: the model's transform (no label) takes the features.
	raw := *page.Batch
	raw.Columns = raw.Columns[:len(raw.Columns)-1]
	var docs []string
	rows, err := pool.Query(ctx, `select json_build_object('flag', flag, 'day', day, 'at', at, 'atz', atz, 'emb', emb, 'vec', vec, 'tag', tag, 'x', x)::text
		from typed_e2e where id <= 20 order by id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			t.Fatal(err)
		}
		docs = append(docs, d)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	instances := make([]map[string]any, len(docs))
	for i, d := range docs {
		if err := json.Unmarshal([]byte(d), &instances[i]); err != nil {
			t.Fatal(err)
		}
	}
	meta := messages.ModelMetaFromPlan(plan)
	online := *meta.Plan()
	online.Label, online.LabelDim = messages.ColumnPlan{}, 0
	online.Kind = messages.JobKindPrediction
	ready, err := transform.Apply(&online, &raw)
	if err != nil {
		t.Fatal(err)
	}
	modelDir := filepath.Join(out, filepath.FromSlash(final.ModelPath))
	net, err := model.LoadTFJS(modelDir)
	if err != nil {
		t.Fatal(err)
	}
	want, err := net.Predict(ready.X, ready.Rows())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cl.Client.Predict(ctx, st.ID, instances)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range resp.Predictions {
		if math.Float32bits(p.Value) != math.Float32bits(want[i]) {
			t.Fatalf("row %d (%s): online %v, the engine on the fetched row %v", i+1, docs[i], p.Value, want[i])
		}
	}
	dir := t.TempDir()
	if err := cl.Client.PullModel(ctx, st.ID, dir); err != nil {
		t.Fatal(err)
	}
	js := runSnippet(t, dir, instances)
	worst := 0.0
	for i, row := range js.Outputs {
		worst = math.Max(worst, math.Abs(row[0]-float64(want[i])))
	}
	if len(js.Outputs) != len(instances) || worst > 1e-6 {
		t.Fatalf("TF.js: %d outputs, differing by up to %g; want %d within 1e-6", len(js.Outputs), worst, len(instances))
	}

	// Batch prediction reads the same types through the fetchers and writes the same values.
	pst, err := cl.Client.SubmitPrediction(ctx, []byte(`{"model": "`+st.ID+`", "table": "typed_e2e", "output": "typed_scores", "evaluate": false}`))
	if err != nil {
		t.Fatal(err)
	}
	if pf := waitJob(t, cl, pst.ID); pf.State != messages.JobDone {
		t.Fatalf("prediction job ended %s: %s", pf.State, pf.Error)
	}
	var n int64
	if err := pool.QueryRow(ctx, `select count(*) from typed_scores`).Scan(&n); err != nil || n != 1500 {
		t.Fatalf("typed_scores holds %d rows (%v), want 1500", n, err)
	}
	for i := range want {
		var v float32
		if err := pool.QueryRow(ctx, `select value from typed_scores where id = $1`, i+1).Scan(&v); err != nil {
			t.Fatal(err)
		}
		if math.Float32bits(v) != math.Float32bits(want[i]) {
			t.Fatalf("key %d: batch prediction %v, online %v", i+1, v, want[i])
		}
	}
	t.Logf("online == engine bit for bit on 20 fetched rows; TF.js within %.3g; batch prediction the same", worst)
}
