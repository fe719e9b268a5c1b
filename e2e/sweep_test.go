package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/coordinator"
	"pgtrain/internal/bus"
	"pgtrain/internal/demo"
	"pgtrain/internal/local"
	"pgtrain/internal/testenv"
	"pgtrain/messages"
	"pgtrain/model"
	"pgtrain/trainer"
)

// sweepBase is spec() with other layers, for the standalone jobs of a sweep's variants.
func sweepBase(seed int64, epochs int, layers []demo.Layer) []byte {
	return demo.Job{
		Table: "events", Key: "id",
		Features: []messages.FeatureSpec{
			{Column: "a", Scale: "standard"},
			{Column: "b", Scale: "minmax"},
			{Column: "c", Impute: "median", Scale: "standard"},
			{Column: "kind", Encode: "onehot"},
		},
		Label:        "y",
		Layers:       layers,
		LearningRate: 0.01, Epochs: epochs, BatchSize: 100, Seed: seed,
		RangeRows: 7000, PageRows: 1500, ValidationSplit: 0.2,
	}.JSON()
}

var sweepLayers = []demo.Layer{demo.Dense(16, "relu", "h"), demo.Dropout(0.1, "drop"), demo.Dense(1, "", "out")}

// A 4-variant sweep on 2 trainers, with a lease window of one range: the table is read from
// PostgreSQL once, every variant sees every row once per epoch, each variant's weights are bit
// for bit those of the same variant trained alone as a normal job (the one with a seed of its
// own reads the ranges in that seed's order, as it does alone), the best variant by val_loss
// is marked, and every variant's model is stored (out dir and model store) with its variant
// in the metadata.
func TestSweepReadsOnceTrainsEachVariantAsAlone(t *testing.T) {
	pool, _ := testenv.Pool(t)
	natsURL := testenv.NATS(t)
	const rows, epochs = 20_000, 2
	makeTable(t, pool, rows)
	want := sqlChecksum(t, pool)
	base := sweepBase(11, epochs, sweepLayers)
	sweep := withControls(t, base, `{"sweep": [
		{"learning_rate": 0.003},
		{"units": [8, 1], "dropout": 0.3},
		{"optimizer": {"name": "sgd", "learning_rate": 0.05, "momentum": 0.9}},
		{"seed": 42}
	]}`)
	alone := [][]byte{
		withControls(t, base, `{"optimizer": {"name": "adam", "learning_rate": 0.003}}`),
		sweepBase(11, epochs, []demo.Layer{demo.Dense(8, "relu", "h"), demo.Dropout(0.3, "drop"), demo.Dense(1, "", "out")}),
		withControls(t, base, `{"optimizer": {"name": "sgd", "learning_rate": 0.05, "momentum": 0.9}}`),
		sweepBase(42, epochs, sweepLayers),
	}

	out := t.TempDir()
	st, plan := runSweep(t, pool, natsURL, out, 2, sweep)
	if !st.Replay {
		t.Fatal("the sweep's plan does not replay READY")
	}
	for e := range epochs {
		if own, job := plan.ForVariant(3).EpochOrder(e), plan.EpochOrder(e); slices.Equal(own, job) {
			t.Fatalf("epoch %d: seed 42 orders the ranges as the job's seed does (%v): the test cannot tell the orders apart", e, own)
		}
	}
	// Read once: every range of the one read pass, rows × 1 from PostgreSQL.
	if st.Fetch.RowsRead != rows || st.Fetch.Done != st.Ranges {
		t.Fatalf("fetched %d rows in %d ranges (of %d), want the table's %d rows once", st.Fetch.RowsRead, st.Fetch.Done, st.Ranges, rows)
	}
	sw := st.Sweep
	if sw == nil || len(sw.Variants) != 4 || sw.Monitor != "val_loss" || sw.Mode != "min" {
		t.Fatalf("sweep status %+v, want 4 variants judged by val_loss, min", sw)
	}
	trainers := map[string]bool{}
	best := -1
	b := mustBus(t, natsURL)
	for i, v := range sw.Variants {
		trainers[v.Trainer.ID] = true
		if v.State != "done" || len(v.Results) != epochs || v.Value == nil {
			t.Fatalf("variant %d: %s with %d results, value %v", i, v.State, len(v.Results), v.Value)
		}
		for _, e := range v.Results {
			seen := e.Seen
			seen.Merge(e.SeenValid)
			if seen != want {
				t.Fatalf("variant %d epoch %d: saw %+v, SQL says %+v", i, e.Epoch, seen, want)
			}
		}
		if best < 0 || *v.Value < *sw.Variants[best].Value {
			best = i
		}
		if v.ModelPath != messages.VariantModelDir(st.ID, i) || v.ModelID != messages.VariantModelID(st.ID, i) {
			t.Fatalf("variant %d: model at %q, id %q", i, v.ModelPath, v.ModelID)
		}
		w := readWeights(t, filepath.Join(out, filepath.FromSlash(v.ModelPath)))
		standalone := runJob(t, pool, natsURL, 2, 2, 1<<30, alone[i])
		if !bytes.Equal(w, standalone.weights) {
			t.Errorf("variant %d: weights differ from the same variant trained alone (job %s)", i, standalone.status.ID)
		}
		if got, wantLoss := v.Results[epochs-1].Loss, standalone.status.Results[epochs-1].Loss; got != wantLoss {
			t.Errorf("variant %d: last loss %v, alone %v", i, got, wantLoss)
		}
		// The model store holds it, with its variant in the metadata.
		js, err := b.ModelFile(context.Background(), v.ModelID, model.TFJSModelFile)
		if err != nil {
			t.Fatalf("variant %d: stored model: %v", i, err)
		}
		meta, err := model.ReadMeta(js)
		if err != nil {
			t.Fatal(err)
		}
		if meta.Variant == nil || meta.Variant.Index != i || meta.JobID != st.ID {
			t.Fatalf("variant %d: stored metadata names variant %+v of job %s", i, meta.Variant, meta.JobID)
		}
	}
	if len(trainers) != 2 {
		t.Errorf("variants trained by %v, want both trainers", trainers)
	}
	if sw.Best == nil || *sw.Best != best || !sw.Variants[best].Best {
		t.Fatalf("best variant %v, the lowest val_loss is variant %d", sw.Best, best)
	}
	if st.ModelPath != messages.VariantModelDir(st.ID, best) {
		t.Errorf("job model path %q, want the best variant's", st.ModelPath)
	}
}

func readWeights(t *testing.T, dir string) []byte {
	t.Helper()
	w, err := os.ReadFile(filepath.Join(dir, "group1-shard1of1.bin"))
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// runSweep runs a job on its own cluster of trainers, with a lease window of one range, and
// returns its final status and plan.
func runSweep(t *testing.T, pool *pgxpool.Pool, natsURL, out string, trainers int, body []byte) (*messages.JobStatus, *messages.Plan) {
	t.Helper()
	ctx := context.Background()
	cl, err := local.Start(ctx, local.Options{
		Sources:       map[string]*pgxpool.Pool{"": pool},
		NATSURL:       natsURL,
		Fetchers:      2,
		Preprocessors: 2,
		Trainer:       true,
		Trainers:      trainers,
		TrainerCfg:    trainer.Config{OutDir: out},
		Coordinator:   coordinator.Config{Window: 1},
		Limits:        bus.Limits{ReadyMaxBytes: 1 << 30},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Stop()
	st, err := cl.Client.Submit(ctx, body)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := cl.Client.Plan(ctx, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	final := waitJob(t, cl, st.ID)
	if final.State != messages.JobDone {
		t.Fatalf("sweep %s ended %s: %s", final.ID, final.State, final.Error)
	}
	return final, plan
}
