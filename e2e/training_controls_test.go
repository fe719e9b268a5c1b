package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
	}
	if !bytes.Equal(one.weights, three.weights) {
		t.Fatal("the stored weights differ between 1 and 3 fetchers")
	}
	if !bytes.Equal(three.weights, firstEpoch.weights) {
		t.Fatal("restore_best_weights: the model is not the first epoch's")
	}
}
