package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSmoke runs the whole harness, as `make bench` does, on 20,000 rows, so that it cannot
// rot: both result files must appear with every required figure positive.
func TestSmoke(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	build := func(out, pkg string) {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
		cmd.Dir = filepath.Join("..", "..")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	pgtrain, harness := filepath.Join(dir, "pgtrain"), filepath.Join(dir, "pipeline")
	build(pgtrain, "./cmd/pgtrain")
	build(harness, "./bench/pipeline")

	out := filepath.Join(dir, "out")
	cmd := exec.CommandContext(ctx, harness, "--rows", "20000", "--out", out, "--pgtrain", pgtrain,
		"--ceiling-runs", "1", "--mem-repeats", "1", "--baseline-py", filepath.Join("..", "baseline.py"),
		"--compare-scorer", pgtrain)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the harness failed: %v\n%s", err, b)
	}
	t.Logf("harness output:\n%s", b)

	raw, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res map[string]any
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"rows", "copy_rows_per_s", "e2e_first_epoch_rows_per_s", "e2e_replay_rows_per_s",
		"best_baseline_rows_per_s", "time_to_first_batch_s", "prediction_rows_per_s", "copy_from_rows_per_s"} {
		v, ok := res[key].(float64)
		if !ok || v <= 0 {
			t.Errorf("results.json %s = %v, want a positive number", key, res[key])
		}
	}
	if res["rows"] != float64(20000) {
		t.Errorf("rows = %v, want 20000", res["rows"])
	}
	rss, _ := res["peak_rss_mb"].(map[string]any)
	for _, size := range []string{"10000", "80000"} {
		roles, _ := rss[size].(map[string]any)
		for _, role := range []string{"nats", "coordinator", "fetcher", "preprocessor", "trainer"} {
			if v, ok := roles[role].(float64); !ok || v <= 0 {
				t.Errorf("peak_rss_mb[%s][%s] = %v, want a positive number", size, role, roles[role])
			}
		}
	}
	ratios, _ := res["plan_to_copy"].(map[string]any)
	for _, size := range []string{"20000", "80000"} {
		if v, ok := ratios[size].(float64); !ok || v <= 0 {
			t.Errorf("plan_to_copy[%s] = %v, want a positive number", size, ratios[size])
		}
	}
	machine, _ := res["machine"].(map[string]any)
	for _, key := range []string{"go", "postgresql", "nats_server"} {
		if s, _ := machine[key].(string); s == "" {
			t.Errorf("machine.%s is empty", key)
		}
	}
	// Every ratio a target judges has its own key (the MLP runs are in a default run too).
	judged, _ := res["ratios"].(map[string]any)
	for _, key := range []string{"first_epoch_to_copy", "first_epoch_to_go_cursor", "mlp_first_epoch_to_copy", "replay_to_copy",
		"first_epoch_rows_per_s_large_to_small", "nats_peak_rss_large_to_small", "nats_peak_rss_to_memory_limit", "trainer_peak_rss_large_to_small",
		"prediction_to_slower_copy"} {
		if v, ok := judged[key].(float64); !ok || v <= 0 {
			t.Errorf("ratios[%s] = %v, want a positive number", key, judged[key])
		}
	}
	// The prediction ran on real scorer processes and wrote every row (the harness checks the
	// output table's count; a scorer's peak RSS shows that one ran).
	pred, _ := res["prediction"].(map[string]any)
	if rate, _ := pred["predict"].(map[string]any); rate["rows"] != float64(20000) {
		t.Errorf("prediction.predict.rows = %v, want 20000", rate["rows"])
	}
	if v, ok := pred["scorers"].(float64); !ok || v < 1 {
		t.Errorf("prediction.scorers = %v, want at least 1", pred["scorers"])
	}
	// The evaluation scored every row without an output table; the comparison ran four times.
	ev, _ := pred["evaluation"].(map[string]any)
	if rate, _ := ev["predict"].(map[string]any); rate["rows"] != float64(20000) {
		t.Errorf("prediction.evaluation = %v, want 20000 rows scored", ev)
	}
	if runs, _ := pred["compared"].([]any); len(runs) != 4 {
		t.Errorf("prediction.compared has %d runs, want 4", len(runs))
	}
	peaks, _ := pred["peak_rss_mb"].(map[string]any)
	if v, ok := peaks["scorer"].(float64); !ok || v <= 0 {
		t.Errorf("prediction.peak_rss_mb.scorer = %v, want a positive number", peaks["scorer"])
	}
	// The sweep read the table once, its 4 variants as separate jobs 4 times, with the same
	// losses.
	if res["sweep_rows_read"] != float64(20000) || res["separate_jobs_rows_read"] != float64(80000) {
		t.Errorf("rows read: sweep %v, separate jobs %v; want 20000 and 80000", res["sweep_rows_read"], res["separate_jobs_rows_read"])
	}
	for _, key := range []string{"sweep_wall_seconds", "separate_jobs_wall_seconds"} {
		if v, ok := res[key].(float64); !ok || v <= 0 {
			t.Errorf("results.json %s = %v, want a positive number", key, res[key])
		}
	}
	if sw, _ := res["sweep"].(map[string]any); sw["same_loss"] != true {
		t.Errorf("sweep.same_loss = %v: a variant's loss differs from its separate job's", sw["same_loss"])
	}
	md, err := os.ReadFile(filepath.Join(out, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## Headline", "## Targets", "## 1. Ceiling", "Planning (", "## 2. The usual ways",
		"## 3. pgtrain end to end", "## 4. Memory", "## 5. Time to first batch", "## 6. Prediction", "## 7. Sweep",
		"| prediction vs the slower of binary COPY in and COPY FROM out |"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("results.md lacks %q", want)
		}
	}
}
