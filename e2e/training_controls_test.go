package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/internal/testenv"
	"pgtrain/messages"
	"pgtrain/model"
)

// withControls adds training controls (JSON fields of the spec) to a job spec.
func withControls(t *testing.T, body []byte, controls string) []byte {
	t.Helper()
	var s, c map[string]any
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(controls), &c); err != nil {
		t.Fatal(err)
	}
	for k, v := range c {
		s[k] = v
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Early stopping ends a 10-epoch job at a known epoch: with a min_delta no epoch can beat,
// only the first epoch improves, and patience 2 stops after the third. The job is done with
// the reason in its status, the same with 1 and 3 fetchers, and its model holds the first
// epoch's weights (restore_best_weights), bit for bit those of a 1-epoch job. The best
// epoch by val_loss (model_checkpoint) is stored beside it.
func TestEarlyStoppingStopsAtAKnownEpoch(t *testing.T) {
	pool, _ := testenv.Pool(t)
	natsURL := testenv.NATS(t)
	makeTable(t, pool, 20_000)
	body := withControls(t, spec(11, 10), `{
		"early_stopping": {"monitor": "loss", "min_delta": 1e9, "patience": 2, "restore_best_weights": true},
		"model_checkpoint": {"monitor": "val_loss"}}`)
	three := runJob(t, pool, natsURL, 3, 2, 2<<20, body)
	one := runJob(t, pool, natsURL, 1, 1, 2<<20, body)
	firstEpoch := runJob(t, pool, natsURL, 1, 1, 2<<20, spec(11, 1))
	b := mustBus(t, natsURL)

	for name, r := range map[string]run{"3 fetchers": three, "1 fetcher": one} {
		st := r.status
		if len(st.Results) != 3 {
			t.Fatalf("%s: %d epochs trained, want 3 of 10", name, len(st.Results))
		}
		if !strings.Contains(st.StopReason, "early stopping at epoch 3 of 10: loss did not improve for 2 epochs") {
			t.Errorf("%s: stop reason %q", name, st.StopReason)
		}
		best := 0
		for i, e := range st.Results {
			if *e.ValLoss < *st.Results[best].ValLoss {
				best = i
			}
		}
		if st.BestEpoch == nil || *st.BestEpoch != best {
			t.Errorf("%s: best epoch %v, the lowest val_loss is epoch %d", name, st.BestEpoch, best)
		}
		for i, e := range st.Results {
			if e.Best != (i == best) {
				t.Errorf("%s: epoch %d marked best = %v", name, i, e.Best)
			}
		}
		if st.BestModelID != messages.BestModelID(st.ID) || st.BestModelPath != messages.BestModelDir(st.ID) {
			t.Errorf("%s: best model %q at %q", name, st.BestModelID, st.BestModelPath)
		}
		meta, err := os.ReadFile(filepath.Join(r.out, filepath.FromSlash(st.BestModelPath), "model.json"))
		if err != nil {
			t.Fatalf("%s: the best epoch's model: %v", name, err)
		}
		m, err := model.ReadMeta(meta)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Metrics["val_loss"]; got != *st.Results[best].ValLoss {
			t.Errorf("%s: the best model's val_loss %v, epoch %d's %v", name, got, best, *st.Results[best].ValLoss)
		}
		stored, err := b.ModelFile(context.Background(), st.BestModelID, "model.json")
		if err != nil || !bytes.Equal(stored, meta) {
			t.Errorf("%s: the model store's %s differs from the out dir's (%v)", name, st.BestModelID, err)
		}
	}
	if !bytes.Equal(one.weights, three.weights) {
		t.Fatal("the stored weights differ between 1 and 3 fetchers")
	}
	if !bytes.Equal(three.weights, firstEpoch.weights) {
		t.Fatal("restore_best_weights: the model is not the first epoch's")
	}
}

// makeClicks creates a table with a 0/1 label, about a quarter of the rows positive.
func makeClicks(t *testing.T, pool *pgxpool.Pool, n int) {
	t.Helper()
	for _, s := range []string{
		`create table clicks (id bigint primary key, a real, b double precision, y integer)`,
		`select setseed(0.3)`,
		fmt.Sprintf(`insert into clicks select i, random()::real, random()*4, 0 from generate_series(1, %d) i`, n),
		`update clicks set y = case when a + b * 0.1 > 0.9 then 1 else 0 end`,
		`analyze clicks`,
	} {
		if _, err := pool.Exec(context.Background(), s); err != nil {
			t.Fatal(err)
		}
	}
}

func clicksSpec(lr float64, classWeight string) []byte {
	s := fmt.Sprintf(`{"table": "clicks", "key": "id", "features": [{"column": "a", "scale": "standard"}, {"column": "b", "scale": "standard"}],
		"label": "y", "model": {"layers": [{"type": "dense", "units": 8, "activation": "relu", "name": "h"}, {"type": "dense", "units": 1, "activation": "sigmoid", "name": "p"}]},
		"loss": "binary_crossentropy", "metrics": ["accuracy"], "optimizer": {"name": "sgd", "learning_rate": %v},
		"epochs": 2, "batch_size": 64, "seed": 5, "range_rows": 2000, "validation_split": 0.2`, lr)
	if classWeight != "" {
		s += `, "class_weight": ` + classWeight
	}
	return []byte(s + "}")
}

// class_weight through the whole pipeline, with Keras's semantics: weighing every class by 2
// doubles each row's loss and gradient, so under SGD it trains to the very bits a doubled
// learning rate gives, and reports twice the training loss (validation is not weighted).
// Uneven weights train to other weights.
func TestClassWeightThroughThePipeline(t *testing.T) {
	pool, _ := testenv.Pool(t)
	natsURL := testenv.NATS(t)
	makeClicks(t, pool, 8000)
	doubled := runJob(t, pool, natsURL, 2, 1, 2<<20, clicksSpec(0.05, `{"0": 2, "1": 2}`))
	fast := runJob(t, pool, natsURL, 2, 1, 2<<20, clicksSpec(0.1, ""))
	uneven := runJob(t, pool, natsURL, 2, 1, 2<<20, clicksSpec(0.05, `"balanced"`))
	if !bytes.Equal(doubled.weights, fast.weights) {
		t.Fatal("class weights of 2 under SGD do not train as a doubled learning rate")
	}
	for i, d := range doubled.status.Results {
		f := fast.status.Results[i]
		if d.Loss != 2*f.Loss || *d.ValLoss != *f.ValLoss || d.Metrics["accuracy"] != f.Metrics["accuracy"] {
			t.Errorf("epoch %d: loss %v vs 2×%v, val_loss %v vs %v, accuracy %v vs %v", i, d.Loss, f.Loss,
				*d.ValLoss, *f.ValLoss, d.Metrics["accuracy"], f.Metrics["accuracy"])
		}
	}
	if bytes.Equal(uneven.weights, doubled.weights) {
		t.Fatal("balanced class weights trained to the same weights")
	}
}

// sample_weight_column through the whole pipeline, with Keras's semantics (the loss is
// Σ w·loss / rows, sum_over_batch_size, the compiled metrics unweighted, the validation loss
// weighted by its rows' weights): weights all 1 train to the very bits no weights give;
// weights all 2 under SGD at half the learning rate train to those bits too, with twice the
// loss and val_loss and the same accuracy (a weighted mean, Σ w·loss / Σ w, would make them
// the same as at half the rate, not the same as at the full rate); weights 0, 1 and 2 by key
// train to other weights, bit-identical with 1 and 3 fetchers, and times a class weight too.
func TestSampleWeightThroughThePipeline(t *testing.T) {
	pool, _ := testenv.Pool(t)
	natsURL := testenv.NATS(t)
	makeClicks(t, pool, 8000)
	for _, s := range []string{
		`alter table clicks add column ones real, add column twos double precision, add column mixed integer`,
		`update clicks set ones = 1, twos = 2, mixed = id % 3`,
	} {
		if _, err := pool.Exec(context.Background(), s); err != nil {
			t.Fatal(err)
		}
	}
	weighted := func(lr float64, column, classWeight string) []byte {
		return withControls(t, clicksSpec(lr, classWeight), fmt.Sprintf(`{"sample_weight_column": %q}`, column))
	}
	plain := runJob(t, pool, natsURL, 1, 1, 2<<20, clicksSpec(0.1, ""))
	ones := runJob(t, pool, natsURL, 3, 2, 2<<20, weighted(0.1, "ones", ""))
	twos := runJob(t, pool, natsURL, 1, 1, 2<<20, weighted(0.05, "twos", ""))
	mixed3 := runJob(t, pool, natsURL, 3, 2, 2<<20, weighted(0.1, "mixed", ""))
	mixed1 := runJob(t, pool, natsURL, 1, 1, 2<<20, weighted(0.1, "mixed", ""))
	withClass := runJob(t, pool, natsURL, 1, 1, 2<<20, weighted(0.1, "mixed", `{"0": 1, "1": 3}`))

	if !bytes.Equal(ones.weights, plain.weights) {
		t.Fatal("sample weights of 1 train to other weights than no sample weights")
	}
	if !bytes.Equal(twos.weights, plain.weights) {
		t.Fatal("sample weights of 2 under SGD do not train as a doubled learning rate")
	}
	for i, d := range twos.status.Results {
		f := plain.status.Results[i]
		if d.Loss != 2*f.Loss || math.Abs(*d.ValLoss-2**f.ValLoss) > 1e-12*math.Abs(*f.ValLoss) || d.Metrics["accuracy"] != f.Metrics["accuracy"] {
			t.Errorf("epoch %d: loss %v vs 2×%v, val_loss %v vs 2×%v, accuracy %v vs %v", i, d.Loss, f.Loss,
				*d.ValLoss, *f.ValLoss, d.Metrics["accuracy"], f.Metrics["accuracy"])
		}
		o := ones.status.Results[i]
		if o.Loss != f.Loss || *o.ValLoss != *f.ValLoss || o.Metrics["accuracy"] != f.Metrics["accuracy"] {
			t.Errorf("epoch %d with weights of 1: loss %v vs %v, val_loss %v vs %v, accuracy %v vs %v", i, o.Loss, f.Loss,
				*o.ValLoss, *f.ValLoss, o.Metrics["accuracy"], f.Metrics["accuracy"])
		}
	}
	if bytes.Equal(mixed3.weights, plain.weights) {
		t.Fatal("sample weights of 0, 1 and 2 trained to the unweighted weights")
	}
	if !bytes.Equal(mixed3.weights, mixed1.weights) {
		t.Fatal("sample-weighted weights differ between 1 and 3 fetchers")
	}
	if bytes.Equal(withClass.weights, mixed1.weights) {
		t.Fatal("a class weight on top of the sample weights changed nothing")
	}
}

// The learning rate follows the spec's schedule (logged at each epoch's end, at the step
// count so far) and ReduceLROnPlateau changes it between epochs.
func TestLearningRateControlsThroughThePipeline(t *testing.T) {
	pool, _ := testenv.Pool(t)
	natsURL := testenv.NATS(t)
	makeClicks(t, pool, 4000)
	sched := runJob(t, pool, natsURL, 1, 1, 2<<20, withControls(t, clicksSpec(0.05, ""), `{"epochs": 3,
		"optimizer": {"name": "sgd", "schedule": {"class_name": "ExponentialDecay",
			"config": {"initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.5}}}}`))
	steps := 0
	for _, r := range sched.status.Results {
		steps += int((r.Seen.Rows + 63) / 64)
		want := 0.1 * math.Pow(0.5, float64(steps)/10)
		if math.Abs(r.LearningRate-want) > 1e-15 {
			t.Errorf("epoch %d: learning rate %v after %d steps, ExponentialDecay gives %v", r.Epoch, r.LearningRate, steps, want)
		}
	}
	// mode "max" on a falling loss: no epoch after the first improves, and with patience 0
	// each halves the rate, read back from float32 first as Keras reads its variable.
	plateau := runJob(t, pool, natsURL, 1, 1, 2<<20, withControls(t, clicksSpec(0.05, ""), `{"epochs": 3,
		"reduce_lr_on_plateau": {"monitor": "loss", "mode": "max", "factor": 0.5, "patience": 0}}`))
	for i, want := range []float64{0.05, 0.05, float64(float32(0.05)) * 0.5} {
		if got := plateau.status.Results[i].LearningRate; got != want {
			t.Errorf("epoch %d: learning rate %v, want %v (losses %v)", i, got, want, plateau.status.Results)
		}
	}
}
