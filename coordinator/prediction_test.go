package coordinator

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"pgtrain/coordinator/client"
	"pgtrain/internal/testenv"
	"pgtrain/messages"
	"pgtrain/model"
)

// storeModel stores a small regression model over a numeric and a one-hot column under id,
// with its preprocessing, as a finished training job leaves it.
func storeModel(t *testing.T, e *env, id string) messages.ModelMeta {
	t.Helper()
	spec, err := model.ParseSpec([]byte(`{"layers": [{"type": "dense", "units": 3, "activation": "relu"}, {"type": "dense", "units": 1}]}`))
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.New(spec, 4, model.Compile{Loss: "mse", Optimizer: model.OptimizerConfig{Name: "adam"}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := m.SaveTFJS(dir); err != nil {
		t.Fatal(err)
	}
	meta := messages.ModelMeta{
		Version: messages.ModelMetaVersion, JobID: id, Schema: "public", Table: "trained", Key: "id",
		Features: []messages.ColumnPlan{
			{Name: "a", PGType: "double precision", Kind: messages.KindNumeric, HasImpute: true, Impute: 0.5, Offset: 1, Factor: 2},
			{Name: "kind", PGType: "text", Kind: messages.KindCategorical, Vocabulary: []string{"x", "y"}},
		},
		Label:     messages.ColumnPlan{Name: "y", PGType: "real", Kind: messages.KindNumeric, Factor: 1},
		LabelKind: messages.LabelRegression, InputDim: 4, LabelDim: 1,
		Spec: messages.JobSpec{Table: "trained", Key: messages.KeyColumns{"id"}, Loss: "mse", Epochs: 3, BatchSize: 32, Seed: 1}.WithDefaults(),
	}
	if err := model.WriteMeta(dir, meta); err != nil {
		t.Fatal(err)
	}
	if err := e.bus.PutModel(context.Background(), id, dir); err != nil {
		t.Fatal(err)
	}
	return meta
}

// A prediction job is planned from the model's preprocessing as it is (only the column
// types are the scored table's), is never given to a trainer, moves its lease window with
// the batches the scorers write, counts a batch reported twice once, and is done when every
// range is read and written.
func TestPredictionJobLifecycle(t *testing.T) {
	e := newEnv(t)
	meta := storeModel(t, e, "trained-1")
	e.exec(t, `create table scored (id integer primary key, a real, kind varchar(10))`)
	e.exec(t, `insert into scored select i, i * 0.5, (array['x','y','z'])[1 + i % 3] from generate_series(1, 500) i`)
	r := start(t, e, Config{Window: 2})
	ctx := context.Background()
	st, err := r.cl.SubmitPrediction(ctx, []byte(`{"model": "trained-1", "table": "scored", "output": "scored_out", "range_rows": 100}`))
	if err != nil {
		t.Fatal(err)
	}
	if st.Kind != messages.JobKindPrediction || st.Rows != 500 || st.Ranges != 5 || st.Epochs != 1 {
		t.Fatalf("status %+v: want a prediction of 500 rows in 5 ranges, read once", st)
	}
	p, err := r.cl.Plan(ctx, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	// No token: the plan comes with its data. Only the PGType is this table's.
	wantFeatures := append([]messages.ColumnPlan(nil), meta.Features...)
	wantFeatures[0].PGType, wantFeatures[1].PGType = "real", "character varying(10)"
	if !reflect.DeepEqual(p.Features, wantFeatures) || p.HasLabel() || p.LabelDim != 0 || p.InputDim != 4 {
		t.Fatalf("plan features %+v label %+v (dim %d): want the model's %+v and no label", p.Features, p.Label, p.LabelDim, wantFeatures)
	}
	if pp := p.Prediction; pp.OutputTable != "scored_out" || pp.KeyType != "integer" || pp.Task != messages.TaskRegression || pp.Evaluate {
		t.Fatalf("prediction plan %+v", pp)
	}
	var cols string
	if err := e.pool.QueryRow(ctx, `select string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' order by attnum)
		from pg_attribute where attrelid = 'scored_out'::regclass and attnum > 0`).Scan(&cols); err != nil {
		t.Fatal(err)
	}
	if cols != "id integer, value real" {
		t.Fatalf("output table columns %q", cols)
	}
	if id, err := r.cl.ClaimJob(ctx, "trainer-1"); err != nil || id != "" {
		t.Fatalf("a trainer claimed %q (%v); prediction jobs are the scorers'", id, err)
	}
	if jobs, err := r.cl.ScorerJobs(ctx); err != nil || !reflect.DeepEqual(jobs, []string{st.ID}) {
		t.Fatalf("scorer jobs %v (%v), want [%s]", jobs, err, st.ID)
	}

	// A batch of a range nobody read is refused.
	order := p.EpochOrder(0)
	report := func(rng, page int, last bool, rows int64) error {
		return r.cl.ReportScored(ctx, st.ID, messages.ScoreReport{ScorerID: "s1", Last: last,
			Batch: messages.BatchID{JobID: st.ID, Range: rng, Page: page}, Keys: messages.KeyChecksum{Rows: rows}})
	}
	if err := report(order[0], 0, true, 1); !errors.Is(err, client.ErrLeaseLost) {
		t.Fatalf("a batch of an unread range: %v, want 409", err)
	}
	// The window is two ranges ahead of the first one not written.
	l1, l2 := mustLease(t, r.cl, "f1"), mustLease(t, r.cl, "f1")
	noLease(t, r.cl, "two ranges leased, none written")
	for _, l := range []*messages.Lease{l1, l2} {
		if _, err := r.cl.ReportLease(ctx, l.ID, messages.LeaseProgress{WorkerID: "f1", NextPage: 2, Rows: l.Range.Rows, Done: true}); err != nil {
			t.Fatal(err)
		}
	}
	noLease(t, r.cl, "two ranges read, none written")
	first := p.Ranges[order[0]]
	if l1.Range.Index != first.Index {
		t.Fatalf("the first lease is of range %d, want %d, the first of the order", l1.Range.Index, first.Index)
	}
	// Two pages; the first reported twice, the last first.
	for _, b := range []struct {
		page int
		last bool
		rows int64
	}{{1, true, first.Rows - 40}, {0, false, 40}, {0, false, 40}} {
		if err := report(first.Index, b.page, b.last, b.rows); err != nil {
			t.Fatal(err)
		}
	}
	l3 := mustLease(t, r.cl, "f2") // the first range is written: the window moved on
	if s, err := r.cl.Job(ctx, st.ID); err != nil || s.Prediction.RangesScored != 1 || s.Prediction.Written.Rows != first.Rows {
		t.Fatalf("status %+v (%v): want one range of %d rows written", s.Prediction, err, first.Rows)
	}
	if _, err := r.cl.ReportLease(ctx, l3.ID, messages.LeaseProgress{WorkerID: "f2", NextPage: 1, Rows: l3.Range.Rows, Done: true}); err != nil {
		t.Fatal(err)
	}
	for _, l := range []*messages.Lease{l2, l3} {
		if err := report(l.Range.Index, 0, true, l.Range.Rows); err != nil {
			t.Fatal(err)
		}
	}

	// Read and write the rest: the job is done, with every row written once.
	for {
		l, err := r.cl.Lease(ctx, "f3")
		if err != nil {
			t.Fatal(err)
		}
		if l == nil {
			break
		}
		if _, err := r.cl.ReportLease(ctx, l.ID, messages.LeaseProgress{WorkerID: "f3", NextPage: 1, Rows: l.Range.Rows, Done: true}); err != nil {
			t.Fatal(err)
		}
		if err := report(l.Range.Index, 0, true, l.Range.Rows); err != nil {
			t.Fatal(err)
		}
	}
	final := waitEnded(t, r, st.ID)
	if final.State != messages.JobDone || final.Prediction.Written.Rows != 500 || final.Prediction.RangesScored != 5 {
		t.Fatalf("final status %s %q %+v: want done with 500 rows written", final.State, final.Error, final.Prediction)
	}
	outputKeyed(t, e, "scored_out", st.ID)
	if err := report(first.Index, 0, false, 40); !errors.Is(err, client.ErrLeaseLost) {
		t.Fatalf("a report after the end: %v, want 409", err)
	}
}

// Mode append takes an output table with the prediction columns and a unique key, and
// refuses one without; replace drops and recreates it.
func TestPredictionOutputModes(t *testing.T) {
	e := newEnv(t)
	storeModel(t, e, "trained-2")
	e.exec(t, `create table scored (id bigint primary key, a double precision, kind text)`)
	e.exec(t, `insert into scored select i, i, 'x' from generate_series(1, 50) i`)
	e.exec(t, `create table ok_out (id bigint primary key, value real, note text)`)
	e.exec(t, `insert into ok_out values (1000, 1, 'kept')`)
	e.exec(t, `create table no_key (id bigint, value real)`)
	e.exec(t, `create table wrong_type (id bigint primary key, value text)`)
	e.exec(t, `create table replaced (x int)`)
	r := start(t, e, Config{})
	ctx := context.Background()
	tests := []struct {
		name      string
		out, mode string
		wantField string // "" means accepted
	}{
		{"append to a matching table", "ok_out", "append", ""},
		{"append creates a missing table", "new_out", "append", ""},
		{"append without a unique key", "no_key", "append", "output"},
		{"append to a mistyped column", "wrong_type", "append", "output"},
		{"replace any table", "replaced", "replace", ""},
		{"an unknown schema", "nosuch.out", "create", "output"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.cl.SubmitPrediction(ctx, []byte(fmt.Sprintf(`{"model": "trained-2", "table": "scored", "output": %q, "mode": %q}`, tt.out, tt.mode)))
			var ae *client.APIError
			switch {
			case tt.wantField == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.wantField != "" && (!errors.As(err, &ae) || ae.Status != 400 || ae.Field != tt.wantField):
				t.Fatalf("got %v, want a 400 on %q", err, tt.wantField)
			}
		})
	}
	var note string
	if err := e.pool.QueryRow(ctx, `select note from ok_out where id = 1000`).Scan(&note); err != nil || note != "kept" {
		t.Fatalf("append lost the table's rows: %q %v", note, err)
	}
	var cols string
	if err := e.pool.QueryRow(ctx, `select string_agg(attname, ',' order by attnum) from pg_attribute
		where attrelid = 'replaced'::regclass and attnum > 0 and not attisdropped`).Scan(&cols); err != nil || cols != "id,value" {
		t.Fatalf("replaced has columns %q (%v), want id,value", cols, err)
	}
}

// A restarted coordinator loads a prediction job's written batches: what was counted stays
// counted (a batch reported again still counts once), and the job ends when the rest is
// written.
func TestPredictionResumesAfterRestart(t *testing.T) {
	e := newEnv(t)
	storeModel(t, e, "trained-3")
	e.exec(t, `create table scored (id bigint primary key, a double precision, kind text)`)
	e.exec(t, `insert into scored select i, i, 'y' from generate_series(1, 300) i`)
	r := start(t, e, Config{Window: 10})
	ctx := context.Background()
	st, err := r.cl.SubmitPrediction(ctx, []byte(`{"model": "trained-3", "table": "scored", "output": "scored_out", "range_rows": 100}`))
	if err != nil {
		t.Fatal(err)
	}
	report := func(cl *client.Client, l *messages.Lease) error {
		return cl.ReportScored(ctx, st.ID, messages.ScoreReport{ScorerID: "s1", Last: true,
			Batch: messages.BatchID{JobID: st.ID, Range: l.Range.Index}, Keys: messages.KeyChecksum{Rows: l.Range.Rows}})
	}
	var leases []*messages.Lease
	for range st.Ranges {
		l := mustLease(t, r.cl, "f1")
		if _, err := r.cl.ReportLease(ctx, l.ID, messages.LeaseProgress{WorkerID: "f1", NextPage: 1, Rows: l.Range.Rows, Done: true}); err != nil {
			t.Fatal(err)
		}
		leases = append(leases, l)
	}
	if err := report(r.cl, leases[0]); err != nil {
		t.Fatal(err)
	}
	r.stop(t)

	r = start(t, e, Config{Window: 10})
	s, err := r.cl.Job(ctx, st.ID)
	if err != nil || s.State != messages.JobRunning || s.Prediction.RangesScored != 1 || s.Prediction.Written.Rows != leases[0].Range.Rows {
		t.Fatalf("after the restart: %+v (%v), want running with one range written", s, err)
	}
	for _, l := range leases {
		if err := report(r.cl, l); err != nil {
			t.Fatal(err)
		}
	}
	final := waitEnded(t, r, st.ID)
	if final.State != messages.JobDone || final.Prediction.Written.Rows != 300 {
		t.Fatalf("final %+v: want done with 300 rows written once", final)
	}
	outputKeyed(t, e, "scored_out", st.ID)
}

// waitEnded waits for a job to end: a prediction job ends once its output table is keyed,
// in the background.
func waitEnded(t *testing.T, r *running, id string) *messages.JobStatus {
	t.Helper()
	var st *messages.JobStatus
	testenv.Eventually(t, time.Minute, "job "+id+" to end", func() bool {
		var err error
		st, err = r.cl.Job(context.Background(), id)
		return err == nil && st.State != messages.JobRunning
	})
	return st
}

// outputKeyed checks that a finished job's output table has its primary key on id and that
// the job's ledger is gone.
func outputKeyed(t *testing.T, e *env, table, jobID string) {
	t.Helper()
	var key string
	err := e.pool.QueryRow(context.Background(), `select string_agg(a.attname, ',') from pg_index i
		join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey)
		where i.indrelid = $1::regclass and i.indisprimary`, table).Scan(&key)
	if err != nil || key != "id" {
		t.Fatalf("the primary key of %s is %q (%v), want id", table, key, err)
	}
	var ledger bool
	if err := e.pool.QueryRow(context.Background(), `select to_regclass($1) is not null`,
		`"`+ledgerPrefix+jobID+`"`).Scan(&ledger); err != nil || ledger {
		t.Fatalf("the ledger of job %s is still there (%v)", jobID, err)
	}
}

// readAndReport reads every range of a job and reports each written as one page.
func readAndReport(t *testing.T, r *running, jobID string) {
	t.Helper()
	ctx := context.Background()
	for {
		l, err := r.cl.Lease(ctx, "f1")
		if err != nil {
			t.Fatal(err)
		}
		if l == nil {
			return
		}
		if _, err := r.cl.ReportLease(ctx, l.ID, messages.LeaseProgress{WorkerID: "f1", NextPage: 1, Rows: l.Range.Rows, Done: true}); err != nil {
			t.Fatal(err)
		}
		if err := r.cl.ReportScored(ctx, jobID, messages.ScoreReport{ScorerID: "s1", Last: true,
			Batch: messages.BatchID{JobID: jobID, Range: l.Range.Index}, Keys: messages.KeyChecksum{Rows: l.Range.Rows}}); err != nil {
			t.Fatal(err)
		}
	}
}

// The output table of modes create and replace is created without its key, next to the
// job's ledger. Keying it is the job's last step: a key written twice fails the job with
// an error that says so, and the ledger goes with the job.
func TestPredictionKeysOutputWhenFinished(t *testing.T) {
	e := newEnv(t)
	storeModel(t, e, "trained-4")
	e.exec(t, `create table scored (id bigint primary key, a double precision, kind text)`)
	e.exec(t, `insert into scored select i, i, 'x' from generate_series(1, 200) i`)
	r := start(t, e, Config{Window: 10})
	ctx := context.Background()
	st, err := r.cl.SubmitPrediction(ctx, []byte(`{"model": "trained-4", "table": "scored", "output": "twice_out", "range_rows": 100}`))
	if err != nil {
		t.Fatal(err)
	}
	var keyed, ledger bool
	if err := e.pool.QueryRow(ctx, `select exists (select 1 from pg_index where indrelid = 'twice_out'::regclass and indisprimary),
		to_regclass($1) is not null`, `"`+ledgerPrefix+st.ID+`"`).Scan(&keyed, &ledger); err != nil || keyed || !ledger {
		t.Fatalf("while written, twice_out keyed %v, ledger there %v (%v): want no key and a ledger", keyed, ledger, err)
	}
	e.exec(t, `insert into twice_out select i, 0 from generate_series(1, 200) i`)
	e.exec(t, `insert into twice_out values (7, 1)`)
	readAndReport(t, r, st.ID)
	final := waitEnded(t, r, st.ID)
	if final.State != messages.JobFailed || !strings.Contains(final.Error, "(id)=(7)") || !strings.Contains(final.Error, "more than once") {
		t.Fatalf("final %s %q: want failed, naming key 7 written more than once", final.State, final.Error)
	}
	testenv.Eventually(t, time.Minute, "the failed job's ledger dropped", func() bool {
		var there bool
		err := e.pool.QueryRow(ctx, `select to_regclass($1) is not null`, `"`+ledgerPrefix+st.ID+`"`).Scan(&there)
		return err == nil && !there
	})
}

// A coordinator that stops while it keys the output table (here: waiting for a lock held
// by another session) leaves the job running; the next one keys the table when it starts,
// and a table keyed already is left as it is.
func TestPredictionKeyingResumesAfterRestart(t *testing.T) {
	e := newEnv(t)
	storeModel(t, e, "trained-5")
	e.exec(t, `create table scored (id bigint primary key, a double precision, kind text)`)
	e.exec(t, `insert into scored select i, i, 'x' from generate_series(1, 200) i`)
	r := start(t, e, Config{Window: 10})
	ctx := context.Background()
	st, err := r.cl.SubmitPrediction(ctx, []byte(`{"model": "trained-5", "table": "scored", "output": "locked_out", "mode": "replace", "range_rows": 100}`))
	if err != nil {
		t.Fatal(err)
	}
	e.exec(t, `insert into locked_out select i, 0 from generate_series(1, 200) i`)
	holder, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = holder.Rollback(ctx) }()
	if _, err := holder.Exec(ctx, `lock table locked_out in access share mode`); err != nil {
		t.Fatal(err)
	}
	readAndReport(t, r, st.ID)
	testenv.Eventually(t, time.Minute, "the keying to wait on the lock", func() bool {
		var waiting bool
		err := e.pool.QueryRow(ctx, `select exists (select 1 from pg_stat_activity where wait_event_type = 'Lock' and query like 'lock table%')`).Scan(&waiting)
		return err == nil && waiting
	})
	r.stop(t)
	if err := holder.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	r = start(t, e, Config{Window: 10})
	final := waitEnded(t, r, st.ID)
	if final.State != messages.JobDone || final.Prediction.Written.Rows != 200 {
		t.Fatalf("final %s %q %+v: want done", final.State, final.Error, final.Prediction)
	}
	outputKeyed(t, e, "locked_out", st.ID)

	// Keying again (a coordinator that died after the commit) changes nothing.
	r.stop(t)
	p := &messages.Plan{JobID: st.ID, Key: "id", Prediction: &messages.PredictionPlan{OutputSchema: "public", OutputTable: "locked_out", Ledger: ledgerPrefix + st.ID}}
	if err := keyOutput(ctx, e.pool, p); err != nil {
		t.Fatalf("keying a keyed table: %v", err)
	}
	outputKeyed(t, e, "locked_out", st.ID)
}

// A prediction's key and filters are checked as a training job's are, and mode append
// needs a unique index on exactly the key's columns (in any order): each refusal a 400
// naming its field, before anything is written.
func TestPredictionTypedKeyChecks(t *testing.T) {
	e := newEnv(t)
	storeModel(t, e, "trained-3")
	e.exec(t, `create table tenants (tenant text, id bigint, a double precision, kind text, f real, primary key (tenant, id))`)
	e.exec(t, `insert into tenants select 't' || i % 3, i, i, 'x', i from generate_series(1, 60) i`)
	e.exec(t, `create table both_out (id bigint, tenant text, value real, unique (id, tenant))`)
	e.exec(t, `create table id_out (tenant text, id bigint unique, value real)`)
	r := start(t, e, Config{})
	ctx := context.Background()
	tests := []struct {
		name, body string
		wantField  string // "" means accepted
		wantRows   int64
	}{
		{"append to a table unique on the key in another order", `"key": ["tenant", "id"], "output": "both_out", "mode": "append"`, "", 60},
		{"append to a table unique on part of the key", `"key": ["tenant", "id"], "output": "id_out", "mode": "append"`, "output", 0},
		{"a composite key, filtered", `"key": ["tenant", "id"], "output": "f_out", "where": [{"column": "tenant", "op": "in", "value": ["t1", "t1'; --"]}]`, "", 20},
		{"a key of a float column", `"key": "f", "output": "x_out"`, "key", 0},
		{"a key that is not unique", `"key": "tenant", "output": "x_out"`, "key", 0},
		{"a filter on an unknown column", `"key": ["tenant", "id"], "output": "x_out", "where": [{"column": "nope", "op": "is_null"}]`, "where[0].column", 0},
		{"a filter without its value", `"key": ["tenant", "id"], "output": "x_out", "where": [{"column": "a", "op": ">"}]`, "where[0].op", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := r.cl.SubmitPrediction(ctx, []byte(`{"model": "trained-3", "table": "tenants", `+tt.body+`}`))
			var ae *client.APIError
			switch {
			case tt.wantField == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.wantField != "" && (!errors.As(err, &ae) || ae.Status != 400 || ae.Field != tt.wantField):
				t.Fatalf("got %v, want a 400 on %q", err, tt.wantField)
			case tt.wantField == "" && st.Rows != tt.wantRows:
				t.Fatalf("planned %d rows, want %d", st.Rows, tt.wantRows)
			}
		})
	}
	var cols string
	if err := e.pool.QueryRow(ctx, `select string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' order by attnum) from pg_attribute
		where attrelid = 'f_out'::regclass and attnum > 0 and not attisdropped`).Scan(&cols); err != nil || cols != "tenant text, id bigint, value real" {
		t.Fatalf("f_out has columns %q (%v)", cols, err)
	}
	if _, err := e.pool.Exec(ctx, `select 1 from x_out`); err == nil {
		t.Fatal("a refused prediction created its output table")
	}
}
