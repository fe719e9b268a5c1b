package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"math/big"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/coordinator"
	"pgtrain/coordinator/client"
	"pgtrain/internal/bus"
	"pgtrain/internal/local"
	"pgtrain/internal/testenv"
	"pgtrain/messages"
	"pgtrain/model"
	"pgtrain/trainer"
)

// withFields returns a job spec with fields set (or, for a nil value, removed).
func withFields(t *testing.T, body []byte, fields map[string]any) []byte {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	for k, v := range fields {
		if v == nil {
			delete(doc, k)
		} else {
			doc[k] = v
		}
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// startCluster runs every role in this process, with a trainer.
func startCluster(t *testing.T, pool *pgxpool.Pool, natsURL string) *local.Cluster {
	t.Helper()
	cl, err := local.Start(context.Background(), local.Options{
		Sources: map[string]*pgxpool.Pool{"": pool}, NATSURL: natsURL,
		Fetchers: 2, Preprocessors: 2, Trainer: true, TrainerCfg: trainer.Config{OutDir: t.TempDir()},
		Coordinator: coordinator.Config{Window: 4},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Stop)
	return cl
}

// trainDone submits a job and waits for it to end done.
func trainDone(t *testing.T, cl *local.Cluster, body []byte) *messages.JobStatus {
	t.Helper()
	st, err := cl.Client.Submit(context.Background(), body)
	if err != nil {
		t.Fatal(err)
	}
	final := waitJob(t, cl, st.ID)
	if final.State != messages.JobDone {
		t.Fatalf("job %s ended %s: %s", final.ID, final.State, final.Error)
	}
	return final
}

func storedFile(t *testing.T, cl *local.Cluster, id, name string) []byte {
	t.Helper()
	b, err := cl.Bus.ModelFile(context.Background(), id, name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func storedMeta(t *testing.T, cl *local.Cluster, id string) messages.ModelMeta {
	t.Helper()
	m, err := model.ReadMeta(storedFile(t, cl, id, bus.ModelJSON))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Three epochs, then two more with init_from, end with the weights and the whole training
// state (optimizer slots and step count, dropout stream) of one five-epoch job, bit for bit.
// That holds because the continuation starts from the stored training state and numbers
// its epochs from the stored model's count (initial_epoch 3), so its range order and row
// shuffles are those of epochs 4 and 5; the data, the spec and the seed are the same.
func TestWarmStartContinuesBitIdentical(t *testing.T) {
	pool, _ := testenv.Pool(t)
	natsURL := testenv.NATS(t)
	makeTable(t, pool, 6000)
	cl := startCluster(t, pool, natsURL)

	first := trainDone(t, cl, spec(5, 3))
	cont := trainDone(t, cl, withFields(t, spec(5, 2), map[string]any{"init_from": first.ID}))
	whole := trainDone(t, cl, spec(5, 5))

	ws := cont.WarmStart
	if ws == nil || ws.InitFrom != first.ID || ws.InitialEpoch != 3 || ws.Preprocessing != messages.PreprocessingReuse {
		t.Fatalf("the continuation's warm start is %+v, want init_from %s, initial_epoch 3, preprocessing reuse", ws, first.ID)
	}
	if ws.RowsBefore != storedMeta(t, cl, first.ID).Rows || ws.Rows != cont.Rows {
		t.Fatalf("warm start rows %d before, %d now; want the stored model's %d and the job's %d", ws.RowsBefore, ws.Rows, storedMeta(t, cl, first.ID).Rows, cont.Rows)
	}
	const shard = "group1-shard1of1.bin"
	if bytes.Equal(storedFile(t, cl, first.ID, shard), storedFile(t, cl, whole.ID, shard)) {
		t.Fatal("3 epochs and 5 epochs gave the same weights: the comparison below would prove nothing")
	}
	if !bytes.Equal(storedFile(t, cl, cont.ID, shard), storedFile(t, cl, whole.ID, shard)) {
		t.Fatal("3 epochs + 2 with init_from and 5 epochs gave different weights")
	}
	if !bytes.Equal(storedFile(t, cl, cont.ID, messages.TrainingStateFile), storedFile(t, cl, whole.ID, messages.TrainingStateFile)) {
		t.Fatal("3 epochs + 2 with init_from and 5 epochs end in different training states (optimizer, step count or random streams)")
	}
	if m := storedMeta(t, cl, cont.ID); m.Epochs != 5 || m.WarmStart == nil || m.WarmStart.InitFrom != first.ID {
		t.Fatalf("the continued model's metadata: epochs %d, warm_start %+v; want 5 epochs from %s", m.Epochs, m.WarmStart, first.ID)
	}
}

// keyChecksum is the checksum of the keys of events that satisfy cond, by SQL alone.
func keyChecksum(t *testing.T, pool *pgxpool.Pool, cond string, args ...any) messages.KeyChecksum {
	t.Helper()
	var rows int64
	var sum, sumSq string
	err := pool.QueryRow(context.Background(), `select count(*),
		(coalesce(sum(id::numeric), 0) % 18446744073709551616 + 18446744073709551616) % 18446744073709551616,
		(coalesce(sum(id::numeric * id::numeric), 0) % 18446744073709551616)
		from events where `+cond, args...).Scan(&rows, &sum, &sumSq)
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

// A job with since "last" reads exactly the keys after the last key the stored model read
// (not the rows inserted below it), starts from the stored weights, and on a table with
// nothing new ends as nothing_new at once.
func TestSinceLastTrainsOnNewRowsOnly(t *testing.T) {
	pool, _ := testenv.Pool(t)
	natsURL := testenv.NATS(t)
	makeTable(t, pool, 3000)
	cl := startCluster(t, pool, natsURL)
	ctx := context.Background()

	first := trainDone(t, cl, spec(7, 2))
	last := storedMeta(t, cl, first.ID).LastKey
	var maxKey int64
	if err := pool.QueryRow(ctx, "select max(id) from events").Scan(&maxKey); err != nil || last != maxKey {
		t.Fatalf("the stored model's last key is %d, the table's largest %d (%v)", last, maxKey, err)
	}
	for _, s := range []string{
		// 700 new rows after the last key, and 40 backfilled below it that since "last" skips.
		`insert into events select 3000000 + i, random()::real, random()*10, i % 50, 'red', 0 from generate_series(1, 700) i`,
		`insert into events select 4000 + i, random()::real, random()*10, i % 50, 'blue', 0 from generate_series(1, 40) i where (4000 + i) % 1000 <> 0`,
		`update events set y = (a*2 - b*0.3 + coalesce(c, 25)*0.01 + case kind when 'red' then 1 else 0 end)::real where id > 3000000 or id between 4001 and 4040`,
	} {
		if _, err := pool.Exec(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	want := keyChecksum(t, pool, "id > $1", last)
	if want.Rows != 700 {
		t.Fatalf("SQL counts %d rows after key %d, want 700", want.Rows, last)
	}
	// A learning rate far below float32's resolution of the weights: each step leaves them
	// as they were, so the new model's weights equal the stored ones only if it started there.
	body := withFields(t, spec(7, 1), map[string]any{
		"init_from": first.ID, "since": "last", "validation_split": 0,
		"optimizer": map[string]any{"name": "adam", "learning_rate": 1e-30},
	})
	next := trainDone(t, cl, body)
	if len(next.Results) != 1 {
		t.Fatalf("%d epoch results, want 1", len(next.Results))
	}
	seen := next.Results[0].Seen
	seen.Merge(next.Results[0].SeenValid)
	if seen != want {
		t.Fatalf("the job read keys %+v, SQL says the keys after %d are %+v", seen, last, want)
	}
	ws := next.WarmStart
	if ws == nil || ws.Since != "last" || ws.AfterKey != last || ws.RowsBefore != storedMeta(t, cl, first.ID).Rows || ws.Rows != 700 {
		t.Fatalf("warm start %+v: want since last after key %d, %d rows before, 700 now", ws, last, storedMeta(t, cl, first.ID).Rows)
	}
	const shard = "group1-shard1of1.bin"
	if !bytes.Equal(storedFile(t, cl, next.ID, shard), storedFile(t, cl, first.ID, shard)) {
		t.Fatal("the new model's weights (lr 1e-30) differ from the stored model's: it did not start from them")
	}
	if m := storedMeta(t, cl, next.ID); m.LastKey != 3000700 || m.Rows != 700 {
		t.Fatalf("the new model records last key %d and %d rows, want 3000700 and 700", m.LastKey, m.Rows)
	}

	// Nothing after the new model's last key: the job ends at once, not as an error.
	st, err := cl.Client.Submit(ctx, withFields(t, spec(7, 1), map[string]any{"init_from": next.ID, "since": "last"}))
	if err != nil {
		t.Fatal(err)
	}
	if st.State != messages.JobNothingNew || !strings.Contains(st.Reason, "nothing new") || !strings.Contains(st.Reason, "3000700") || st.Ranges != 0 {
		t.Fatalf("job on an unchanged table: state %q, reason %q, %d ranges; want nothing_new after key 3000700", st.State, st.Reason, st.Ranges)
	}
	if _, err := cl.Bus.ModelFile(ctx, st.ID, bus.ModelJSON); !errors.Is(err, bus.ErrNoModel) {
		t.Fatalf("a nothing_new job has a stored model (%v)", err)
	}
}

// With preprocessing "recompute" the new job's statistics are the current table's, not the
// stored model's (rows inserted since shift a feature's mean and its standard scaling),
// while its weights start from the stored model's.
func TestWarmStartRecomputesPreprocessing(t *testing.T) {
	pool, _ := testenv.Pool(t)
	natsURL := testenv.NATS(t)
	makeTable(t, pool, 3000)
	cl := startCluster(t, pool, natsURL)
	ctx := context.Background()

	first := trainDone(t, cl, spec(9, 2))
	// As many rows of each kind, so that the vocabulary (by frequency) stays the model's.
	if _, err := pool.Exec(ctx, `insert into events select 5000000 + i, 50 + random()::real, random()*10, i % 50,
		(array['red','green','blue','cyan'])[1 + i % 4], 1 from generate_series(1, 1000) i`); err != nil {
		t.Fatal(err)
	}
	// A learning rate far below float32's resolution of the weights: the new model's weights
	// equal the stored ones only if it started from them.
	next := trainDone(t, cl, withFields(t, spec(9, 1), map[string]any{
		"init_from": first.ID, "preprocessing": "recompute", "validation_split": 0,
		"optimizer": map[string]any{"name": "adam", "learning_rate": 1e-30},
	}))
	if ws := next.WarmStart; ws == nil || ws.InitFrom != first.ID || ws.Preprocessing != messages.PreprocessingRecompute {
		t.Fatalf("warm start %+v, want init_from %s with preprocessing recompute", ws, first.ID)
	}
	before, err := cl.Client.Plan(ctx, first.ID)
	if err != nil {
		t.Fatal(err)
	}
	after, err := cl.Client.Plan(ctx, next.ID)
	if err != nil {
		t.Fatal(err)
	}
	var count int64
	var mean, std float64
	if err := pool.QueryRow(ctx, `select count(a), avg(a::float8), stddev_pop(a::float8) from events`).Scan(&count, &mean, &std); err != nil {
		t.Fatal(err)
	}
	old, now := before.Features[0], after.Features[0]
	if now.Name != "a" || old.Name != "a" {
		t.Fatalf("first features %q and %q, want a", old.Name, now.Name)
	}
	if now.Stats.Count != count || math.Abs(now.Stats.Mean-mean) > 1e-9*math.Abs(mean) {
		t.Fatalf("recomputed statistics of a: %d rows, mean %v; SQL now says %d rows, mean %v", now.Stats.Count, now.Stats.Mean, count, mean)
	}
	if old.Stats.Count != 3000 || math.Abs(old.Stats.Mean-now.Stats.Mean) < 5 {
		t.Fatalf("stored statistics of a: %d rows, mean %v; recomputed: %d rows, mean %v: the insert did not shift them", old.Stats.Count, old.Stats.Mean, now.Stats.Count, now.Stats.Mean)
	}
	if now.Offset != now.Stats.Mean || now.Offset == old.Offset || now.Factor == old.Factor {
		t.Fatalf("standard scaling of a: offset %v factor %v, stored %v and %v; want the recomputed mean and a new factor", now.Offset, now.Factor, old.Offset, old.Factor)
	}
	const shard = "group1-shard1of1.bin"
	if !bytes.Equal(storedFile(t, cl, next.ID, shard), storedFile(t, cl, first.ID, shard)) {
		t.Fatal("the new model's weights (lr 1e-30) differ from the stored model's: it did not start from them")
	}
	if m := storedMeta(t, cl, next.ID); m.Features[0].Offset != now.Offset {
		t.Fatalf("the new model stores offset %v for a, its plan %v", m.Features[0].Offset, now.Offset)
	}
}

// Bad warm starts are refused with a 400 naming the field, and create no job.
func TestWarmStartBadInput(t *testing.T) {
	pool, _ := testenv.Pool(t)
	natsURL := testenv.NATS(t)
	makeTable(t, pool, 1500)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `create table events_copy as select * from events; alter table events_copy add primary key (id)`); err != nil {
		t.Fatal(err)
	}
	cl := startCluster(t, pool, natsURL)
	id := trainDone(t, cl, spec(3, 1)).ID
	base := spec(3, 1)
	set := func(fields map[string]any) string { return string(withFields(t, base, fields)) }
	layers := func(units int) map[string]any {
		return map[string]any{"layers": []any{
			map[string]any{"type": "dense", "units": units, "activation": "relu", "name": "h"},
			map[string]any{"type": "dropout", "rate": 0.1, "name": "drop"},
			map[string]any{"type": "dense", "units": 1, "name": "out"},
		}}
	}
	tests := []struct {
		name      string
		body      string
		wantField string
		wantIn    string
	}{
		{"unknown model", set(map[string]any{"init_from": "nosuch-00000000"}), "init_from", "nosuch-00000000"},
		{"malformed id", set(map[string]any{"init_from": "No Such!"}), "init_from", "No Such!"},
		{"since without init_from", set(map[string]any{"since": "last"}), "since", "init_from"},
		{"preprocessing without init_from", set(map[string]any{"preprocessing": "reuse"}), "preprocessing", "init_from"},
		{"unknown since", set(map[string]any{"init_from": id, "since": "yesterday"}), "since", "yesterday"},
		{"unknown preprocessing", set(map[string]any{"init_from": id, "preprocessing": "fresh"}), "preprocessing", "fresh"},
		{"other layer width", set(map[string]any{"init_from": id, "model": layers(8)}), "model.layers[0]", "8 units"},
		{"other features", set(map[string]any{"init_from": id, "features": []any{map[string]any{"column": "a", "scale": "standard"}}}), "features", "1 columns"},
		{"other transform with reuse", set(map[string]any{"init_from": id, "features": []any{
			map[string]any{"column": "a", "scale": "minmax"},
			map[string]any{"column": "b", "scale": "minmax"},
			map[string]any{"column": "c", "impute": "median", "scale": "standard"},
			map[string]any{"column": "kind", "encode": "onehot"},
		}}), "features[0]", "reuse"},
		{"other optimizer", set(map[string]any{"init_from": id, "optimizer": map[string]any{"name": "sgd"}}), "optimizer.name", "adam"},
		{"other backend", set(map[string]any{"init_from": id, "backend": "tensorflow"}), "backend", "tensorflow"},
		{"since last on another table", set(map[string]any{"init_from": id, "since": "last", "table": "events_copy"}), "table", "events_copy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := cl.Client.Submit(ctx, []byte(tt.body))
			var ae *client.APIError
			if !errors.As(err, &ae) || ae.Status != 400 || ae.Field != tt.wantField || !strings.Contains(ae.Message, tt.wantIn) {
				t.Fatalf("got %v (%+v), want 400 on field %q mentioning %q", err, ae, tt.wantField, tt.wantIn)
			}
		})
	}
	jobs, err := cl.Client.Jobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 1 {
		t.Fatalf("%d jobs after refused submissions, want only the trained one", len(jobs))
	}
}
