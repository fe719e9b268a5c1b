package coordinator

import (
	"context"
	"encoding/json"
	"github.com/jackc/pgx/v5"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"pgtrain/messages"
)

// specJSON builds a job spec document; mutate adjusts the decoded map before encoding.
func specJSON(t testing.TB, mutate func(m map[string]any)) []byte {
	t.Helper()
	m := map[string]any{
		"table": "iris",
		"key":   "id",
		"features": []any{
			map[string]any{"column": "sepal", "scale": "standard"},
			map[string]any{"column": "petal", "scale": "minmax", "impute": "median"},
			map[string]any{"column": "city", "encode": "onehot", "vocab_size": 2},
		},
		"label":  map[string]any{"column": "species", "encode": "onehot"},
		"model":  json.RawMessage(`{"layers": [{"type": "dense", "units": 8, "activation": "relu"}, {"type": "dense", "units": 3, "activation": "softmax"}]}`),
		"loss":   "categorical_crossentropy",
		"epochs": 2,
		"seed":   7,
	}
	if mutate != nil {
		mutate(m)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func feature(m map[string]any, i int) map[string]any {
	return m["features"].([]any)[i].(map[string]any)
}

// irisTable: 1000 rows; sepal = id % 10, petal = id % 7 with every 100th NULL, city has two
// values of 400 rows and one of 200, species cycles through three classes.
func irisTable(t testing.TB, e *env) {
	e.exec(t, `create table iris (
  id bigint primary key, sepal float8, petal real, city text, species text,
  width float8, plain_int int, note text, nully float8, grade int)`)
	e.exec(t, `insert into iris
select i, i % 10, case when i % 100 = 0 then null else i % 7 end,
  case when i % 5 < 2 then 'oslo' when i % 5 < 4 then 'bergen' else 'tromso' end,
  (array['setosa','versicolor','virginica'])[i % 3 + 1],
  i * 0.5, i, 'n' || i, case when i % 2 = 0 then null else 1 end, i % 12
from generate_series(1, 1000) i`)
	e.exec(t, `create table other_source_table (id int)`)
}

func TestSubmitRejectsBadSpecs(t *testing.T) {
	e := newEnv(t)
	irisTable(t, e)
	r := start(t, e, Config{})
	ctx := context.Background()
	tests := []struct {
		name      string
		mutate    func(m map[string]any)
		raw       string
		wantField string
		wantText  string
	}{
		{name: "unknown table", mutate: func(m map[string]any) { m["table"] = "nope" }, wantField: "table", wantText: `no table or view "nope"`},
		{name: "unknown schema", mutate: func(m map[string]any) { m["table"] = "nope.iris" }, wantField: "table", wantText: `schema "nope"`},
		{name: "quoting trick in table", mutate: func(m map[string]any) { m["table"] = `iris"; drop table iris; --` }, wantField: "table"},
		{name: "quoting trick in qualified table", mutate: func(m map[string]any) { m["table"] = `public.iris" where false; --` }, wantField: "table"},
		{name: "unknown feature column", mutate: func(m map[string]any) { feature(m, 1)["column"] = "petals" }, wantField: "features[1].column", wantText: `no column "petals"`},
		{name: "quoting trick in column", mutate: func(m map[string]any) { feature(m, 0)["column"] = `sepal"; drop table iris; --` }, wantField: "features[0].column"},
		{name: "unknown label", mutate: func(m map[string]any) { m["label"] = "kind" }, wantField: "label", wantText: `no column "kind"`},
		{name: "unknown key", mutate: func(m map[string]any) { m["key"] = "ident" }, wantField: "key"},
		{name: "text feature without encoding", mutate: func(m map[string]any) { feature(m, 2)["encode"] = ""; delete(feature(m, 2), "vocab_size") }, wantField: "features[2].encode", wantText: "not numeric"},
		{name: "text label without encoding", mutate: func(m map[string]any) { m["label"] = "species" }, wantField: "label", wantText: "not numeric"},
		{name: "non-integer key", mutate: func(m map[string]any) { m["key"] = "width" }, wantField: "key", wantText: "integer"},
		{name: "key without an index", mutate: func(m map[string]any) { m["key"] = "plain_int" }, wantField: "key", wantText: "btree index"},
		{name: "feature is the key", mutate: func(m map[string]any) { feature(m, 0)["column"] = "id" }, wantField: "features[0].column"},
		{name: "NULLs without imputation", mutate: func(m map[string]any) { feature(m, 0)["column"] = "nully" }, wantField: "features[0].impute", wantText: "500 NULLs"},
		{name: "unknown source", mutate: func(m map[string]any) { m["source"] = "warehouse" }, wantField: "source", wantText: `unknown source "warehouse"`},
		{name: "model output width differs from the label", mutate: func(m map[string]any) {
			m["model"] = json.RawMessage(`{"layers": [{"type": "dense", "units": 4, "activation": "softmax"}]}`)
		}, wantField: "model", wantText: "outputs 4 values per row but the label encodes to 3"},
		{name: "sparse label needs one score per class", mutate: func(m map[string]any) {
			m["label"] = map[string]any{"column": "species", "encode": "index"}
			m["loss"] = "sparse_categorical_crossentropy"
			m["model"] = json.RawMessage(`{"layers": [{"type": "dense", "units": 1}]}`)
		}, wantField: "model", wantText: "classes: 3"},
		{name: "unknown layer", mutate: func(m map[string]any) {
			m["model"] = json.RawMessage(`{"layers": [{"type": "conv2d", "units": 3}]}`)
		}, wantField: "model"},
		{name: "unknown loss", mutate: func(m map[string]any) { m["loss"] = "hinge_squared" }, wantField: "loss"},
		{name: "loss does not fit the label encoding", mutate: func(m map[string]any) { m["loss"] = "sparse_categorical_crossentropy" }, wantField: "loss"},
		{name: "bad optimizer", mutate: func(m map[string]any) { m["optimizer"] = map[string]any{"name": "adam", "learning_rate": -1} }, wantField: "optimizer"},
		{name: "unknown metric", mutate: func(m map[string]any) { m["metrics"] = []string{"f7_score"} }, wantField: "metrics"},
		{name: "invalid JSON", raw: `{"table": `, wantField: "spec"},
		{name: "unknown field", mutate: func(m map[string]any) { m["tabel"] = "iris" }, wantField: "spec"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := []byte(tt.raw)
			if tt.raw == "" {
				body = specJSON(t, tt.mutate)
			}
			_, err := r.cl.Submit(ctx, body)
			ae := apiErr(t, err)
			if ae.Status != 400 || ae.Field != tt.wantField {
				t.Fatalf("got %d field %q (%s), want 400 field %q", ae.Status, ae.Field, ae.Message, tt.wantField)
			}
			if !strings.Contains(ae.Message, tt.wantText) {
				t.Fatalf("message %q does not contain %q", ae.Message, tt.wantText)
			}
		})
	}
	var n int
	if err := e.pool.QueryRow(ctx, "select count(*) from iris").Scan(&n); err != nil || n != 1000 {
		t.Fatalf("iris after the quoting tricks: %d rows, %v", n, err)
	}
	if jobs, err := r.cl.Jobs(ctx); err != nil || len(jobs) != 0 {
		t.Fatalf("rejected specs created jobs: %v, %v", jobs, err)
	}
}

func TestSubmitPlansAGoodSpec(t *testing.T) {
	e := newEnv(t)
	irisTable(t, e)
	r := start(t, e, Config{})
	ctx := context.Background()
	st, err := r.cl.Submit(ctx, specJSON(t, func(m map[string]any) {
		m["range_rows"] = 300
		m["validation_split"] = 0.25
	}))
	if err != nil {
		t.Fatal(err)
	}
	if st.State != messages.JobRunning || messages.ValidJobID(st.ID) != nil || !strings.HasPrefix(st.ID, "iris-") {
		t.Fatalf("status %+v", st)
	}
	// range_rows 300 would give 4 ranges; a validation split asks for at least 20, so that
	// the held-out share (whole ranges) is close to the fraction asked.
	if st.Rows != 1000 || st.Ranges != minValidationGranularity || st.Fetch.Pending != st.Ranges*st.Epochs && !st.Replay {
		t.Fatalf("status %+v", st)
	}
	p, err := r.cl.Plan(ctx, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	if p.Schema != "public" || p.Table != "iris" || p.Key != "id" || p.JobID != st.ID {
		t.Fatalf("plan relation %s.%s key %s job %s", p.Schema, p.Table, p.Key, p.JobID)
	}
	// sepal = i % 10 over 1..1000: mean 4.5, population stddev sqrt(8.25).
	sepal := p.Features[0]
	if sepal.Kind != messages.KindNumeric || sepal.Stats.Count != 1000 || sepal.Stats.Nulls != 0 ||
		!near(sepal.Stats.Mean, 4.5) || !near(sepal.Stats.StdDev, math.Sqrt(8.25)) ||
		!near(sepal.Offset, 4.5) || !near(sepal.Factor, 1/math.Sqrt(8.25)) || sepal.HasImpute {
		t.Fatalf("sepal plan %+v", sepal)
	}
	// petal = i % 7 except every 100th row: 10 NULLs; min 0, max 6, median 3.
	petal := p.Features[1]
	if petal.Stats.Nulls != 10 || petal.Stats.Count != 990 || !petal.HasImpute || !near(petal.Impute, 3) ||
		!near(petal.Offset, 0) || !near(petal.Factor, 1.0/6) || petal.PGType != "real" {
		t.Fatalf("petal plan %+v", petal)
	}
	// city: oslo and bergen have 400 rows each (tie broken by value), tromso 200; K = 2.
	city := p.Features[2]
	if city.Kind != messages.KindCategorical || strings.Join(city.Vocabulary, ",") != "bergen,oslo" || city.Width() != 3 {
		t.Fatalf("city plan %+v", city)
	}
	if strings.Join(p.Label.Vocabulary, ",") != "setosa,versicolor,virginica" || p.LabelDim != 3 || p.InputDim != 5 {
		t.Fatalf("label %+v, label dim %d, input dim %d", p.Label, p.LabelDim, p.InputDim)
	}
	if len(p.Ranges) != 20 || p.ValidationRanges != 5 || p.Ranges[0].Lo != math.MinInt64 || p.Ranges[19].Hi != math.MaxInt64 {
		t.Fatalf("ranges %+v, %d validation", p.Ranges, p.ValidationRanges)
	}
	for i := 1; i < len(p.Ranges); i++ {
		if p.Ranges[i].Lo != p.Ranges[i-1].Hi+1 || p.Ranges[i].Index != i {
			t.Fatalf("ranges not contiguous: %+v", p.Ranges)
		}
	}
	if p.Expected.Rows != 750 || p.ExpectedValid.Rows != 250 {
		t.Fatalf("expected %+v, validation %+v", p.Expected, p.ExpectedValid)
	}
	if p.PageRows < 1 || p.PageRows > maxPageRows || !p.Replay || p.Window != DefaultWindow || p.Snapshot != "" {
		t.Fatalf("page rows %d, replay %v, window %d, snapshot %q", p.PageRows, p.Replay, p.Window, p.Snapshot)
	}
	// A numeric label's classes are in numeric order; a sparse label is one float wide.
	st2, err := r.cl.Submit(ctx, specJSON(t, func(m map[string]any) {
		m["label"] = map[string]any{"column": "grade", "encode": "index"}
		m["loss"] = "sparse_categorical_crossentropy"
		m["model"] = json.RawMessage(`{"layers": [{"type": "dense", "units": 12, "activation": "softmax"}]}`)
	}))
	if err != nil {
		t.Fatal(err)
	}
	p2, err := r.cl.Plan(ctx, st2.ID)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(p2.Label.Vocabulary, ",") != "0,1,2,3,4,5,6,7,8,9,10,11" || p2.LabelDim != 1 || p2.Label.Kind != messages.KindCategorical {
		t.Fatalf("grade label %+v, dim %d", p2.Label, p2.LabelDim)
	}
	jobs, err := r.cl.Jobs(ctx)
	if err != nil || len(jobs) != 2 || jobs[0].ID != st.ID || jobs[1].ID != st2.ID {
		t.Fatalf("jobs %+v, %v", jobs, err)
	}
}

func TestSubmitIsIdempotentPerKey(t *testing.T) {
	e := newEnv(t)
	irisTable(t, e)
	r := start(t, e, Config{})
	body := specJSON(t, nil)
	ids := map[string]bool{}
	for range 3 {
		req := mustRequest(t, "POST", "http://"+r.c.Addr()+"/v1/jobs", body)
		req.Header.Set("Idempotency-Key", "same-key-1")
		var st messages.JobStatus
		if code := doJSON(t, req, &st); code != 201 {
			t.Fatalf("status %d", code)
		}
		ids[st.ID] = true
	}
	if len(ids) != 1 {
		t.Fatalf("one key made jobs %v", ids)
	}
	jobs, err := r.cl.Jobs(context.Background())
	if err != nil || len(jobs) != 1 {
		t.Fatalf("jobs %v, %v", jobs, err)
	}
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

// The statistics feed every feature, so they must not depend on the order in which parallel
// workers combine partial aggregates: the same table planned again gives the same bits.
func TestStatisticsAreTheSameUnderParallelQuery(t *testing.T) {
	e := newEnv(t)
	e.exec(t, `create table wide (id bigint primary key, x float8, y float8)`)
	e.exec(t, `insert into wide select i, sin(i) * 1e3 + 1/(i::float8), cos(i) from generate_series(1, 300000) i`)
	e.exec(t, `analyze wide`)
	// Make PostgreSQL split the scan over workers even for this small table.
	for _, s := range []string{"parallel_setup_cost = 0", "parallel_tuple_cost = 0",
		"min_parallel_table_scan_size = 0", "max_parallel_workers_per_gather = 4"} {
		e.exec(t, "alter database "+currentDatabase(t, e)+" set "+s)
	}
	r := start(t, e, Config{})
	ctx := context.Background()
	spec := specJSON(t, func(m map[string]any) {
		m["table"] = "wide"
		m["features"] = []any{map[string]any{"column": "x", "scale": "standard"}}
		m["label"] = "y"
		m["loss"] = "mse"
		m["model"] = json.RawMessage(`{"layers": [{"type": "dense", "units": 1}]}`)
	})
	var first messages.ColumnPlan
	for i := range 8 {
		st, err := r.cl.Submit(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		p, err := r.cl.Plan(ctx, st.ID)
		if err != nil {
			t.Fatal(err)
		}
		got := p.Features[0]
		if i == 0 {
			first = got
			continue
		}
		if math.Float64bits(got.Offset) != math.Float64bits(first.Offset) || math.Float64bits(got.Factor) != math.Float64bits(first.Factor) {
			t.Fatalf("plan %d: offset %v factor %v; the first plan had %v and %v", i, got.Offset, got.Factor, first.Offset, first.Factor)
		}
	}
}

func currentDatabase(t *testing.T, e *env) string {
	t.Helper()
	var db string
	if err := e.pool.QueryRow(context.Background(), "select current_database()").Scan(&db); err != nil {
		t.Fatal(err)
	}
	return pgx.Identifier{db}.Sanitize()
}

// The statistics must not depend on the physical order of the rows either: the same rows
// rewritten in another order (CLUSTER on another column) plan to the same bits, and so do
// the range counts and checksums.
func TestStatisticsAreTheSameInAnyPhysicalOrder(t *testing.T) {
	e := newEnv(t)
	e.exec(t, `create table shuffled (id bigint primary key, x float8, r real, n numeric, c int, y float8)`)
	e.exec(t, `insert into shuffled select i, sin(i) * 1e3 + 1/(i::float8), cos(i)::real * 7,
  (i % 1000) / 7.0, case when i % 11 = 0 then null else i % 97 end, tan(i)
from generate_series(1, 100000) i`)
	e.exec(t, `create index shuffled_x on shuffled (x)`)
	r := start(t, e, Config{})
	ctx := context.Background()
	spec := specJSON(t, func(m map[string]any) {
		m["table"] = "shuffled"
		m["features"] = []any{
			map[string]any{"column": "x", "scale": "standard"},
			map[string]any{"column": "r", "scale": "standard"},
			map[string]any{"column": "n", "scale": "minmax"},
			map[string]any{"column": "c", "impute": "median", "scale": "standard"},
		}
		m["label"] = "y"
		m["loss"] = "mse"
		m["range_rows"] = 7000
		m["model"] = json.RawMessage(`{"layers": [{"type": "dense", "units": 1}]}`)
	})
	plan := func() *messages.Plan {
		t.Helper()
		st, err := r.cl.Submit(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		p, err := r.cl.Plan(ctx, st.ID)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	bitsOf := func(p *messages.Plan) []uint64 {
		var out []uint64
		for _, cp := range append(p.Features, p.Label) {
			s := cp.Stats
			for _, v := range []float64{s.Mean, s.StdDev, s.Min, s.Max, s.Median, cp.Offset, cp.Factor, cp.Impute} {
				out = append(out, math.Float64bits(v))
			}
			out = append(out, uint64(s.Count), uint64(s.Nulls))
		}
		return out
	}
	before := plan()
	var firstKey int64
	if err := e.pool.QueryRow(ctx, `select id from shuffled limit 1`).Scan(&firstKey); err != nil {
		t.Fatal(err)
	}
	e.exec(t, `cluster shuffled using shuffled_x`)
	var firstAfter int64
	if err := e.pool.QueryRow(ctx, `select id from shuffled limit 1`).Scan(&firstAfter); err != nil {
		t.Fatal(err)
	}
	if firstKey == firstAfter {
		t.Fatalf("CLUSTER left row %d first: the physical order did not change", firstKey)
	}
	after := plan()
	if b, a := bitsOf(before), bitsOf(after); !slices.Equal(b, a) {
		t.Fatalf("statistics changed with the physical order:\nbefore %+v %+v\nafter  %+v %+v", before.Features, before.Label, after.Features, after.Label)
	}
	if before.Expected != after.Expected || !reflect.DeepEqual(before.Ranges, after.Ranges) || before.Expected.Rows+before.ExpectedValid.Rows != 100000 {
		t.Fatalf("ranges or checksums changed: %+v %+v, then %+v %+v", before.Ranges, before.Expected, after.Ranges, after.Expected)
	}
	if c := before.Features[3]; c.Stats.Nulls != 9090 || !near(c.Impute, 48) {
		t.Fatalf("c plan %+v", c)
	}
}

// The statistics read in parts on helper connections, merged, are the statistics read in
// one pass: every bit of the plan is the same.
func TestPlanInPartsIsThePlanOfOnePass(t *testing.T) {
	e := newEnv(t)
	e.exec(t, `create table parted (id bigint primary key, x float8, r real, c text, y float8)`)
	e.exec(t, `insert into parted select i, sin(i) * 1e3 + 1/(i::float8), case when i % 13 = 0 then null else cos(i)::real end,
  (array['a','b','c','d','e','f','g'])[1 + (i * 7919) % 7], tan(i)
from generate_series(1, 250000) i`)
	ctx := context.Background()
	spec, err := messages.ParseJobSpec(specJSON(t, func(m map[string]any) {
		m["table"] = "parted"
		m["features"] = []any{
			map[string]any{"column": "x", "scale": "standard"},
			map[string]any{"column": "r", "scale": "minmax", "impute": "mean"},
			map[string]any{"column": "c", "encode": "onehot", "vocab_size": 4},
		}
		m["label"] = "y"
		m["loss"] = "mse"
		m["range_rows"] = 30000
	}))
	if err != nil {
		t.Fatal(err)
	}
	plan := func(pc planConns) *messages.Plan {
		t.Helper()
		pc, _, end := planInParts(t, e, spec, pc)
		defer end()
		p, err := planSpec(ctx, pc, spec, "parted-1", func(string) error { return nil },
			sizing{maxPayload: 1 << 20, readyMaxBytes: 1 << 30, window: DefaultWindow, vocabLimit: DefaultMaxVocabSize}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	whole := plan(planConns{})
	for _, helpers := range []int{1, 2, 5} {
		parts := plan(planConns{pool: e.pool, helpers: helpers})
		if !reflect.DeepEqual(whole, parts) {
			t.Fatalf("%d helpers: plan\n%+v\none pass:\n%+v", helpers, parts, whole)
		}
	}
	rows, err := e.pool.Query(ctx, `select c from parted group by c order by count(*) desc, c collate "C" limit 4`)
	if err != nil {
		t.Fatal(err)
	}
	vocab, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if whole.Expected.Rows != 250000 || len(whole.Ranges) != 9 || !slices.Equal(whole.Features[2].Vocabulary, vocab) {
		t.Fatalf("plan of %d rows, %d ranges, vocabulary %q; SQL's %q", whole.Expected.Rows, len(whole.Ranges), whole.Features[2].Vocabulary, vocab)
	}
}

// planInParts opens a planning transaction for spec on e into pc, resolves the spec, and
// checks that the table is read in as many parts as pc's connections take: one pass on the
// transaction alone. end rolls the transaction back, which frees its connection for the
// next plan's helpers.
func planInParts(t *testing.T, e *env, spec messages.JobSpec, pc planConns) (_ planConns, _ *planInput, end func()) {
	t.Helper()
	ctx := context.Background()
	tx, err := e.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		t.Fatal(err)
	}
	end = func() { _ = tx.Rollback(ctx) }
	pc.tx = tx
	in, err := resolveSpec(ctx, tx, spec, func(string) error { return nil })
	if err != nil {
		end()
		t.Fatal(err)
	}
	want := 1
	if pc.pool != nil {
		want = (pc.helpers + 1) * partsPerConn
	}
	if parts, err := tableParts(ctx, pc, in); err != nil || len(parts) != want {
		end()
		t.Fatalf("%d parts for %d helpers (%v): the table is too small to be read in parts", len(parts), pc.helpers, err)
	}
	return pc, in, end
}

// A one-hot column with more distinct values than the coordinator counts in memory gets
// its vocabulary from SQL, the same one.
func TestVocabularyPastTheCountingLimit(t *testing.T) {
	e := newEnv(t)
	irisTable(t, e)
	ctx := context.Background()
	spec := specJSON(t, func(m map[string]any) {
		m["features"] = []any{map[string]any{"column": "note", "encode": "onehot", "vocab_size": 3}}
	})
	for _, limit := range []int{5, DefaultMaxVocabSize} {
		r := start(t, e, Config{Limits: Limits{VocabSize: limit}})
		st, err := r.cl.Submit(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		p, err := r.cl.Plan(ctx, st.ID)
		if err != nil {
			t.Fatal(err)
		}
		// 1000 values once each: the ties go in byte order.
		if got := strings.Join(p.Features[0].Vocabulary, ","); got != "n1,n10,n100" {
			t.Fatalf("limit %d: vocabulary %q", limit, got)
		}
	}
}
