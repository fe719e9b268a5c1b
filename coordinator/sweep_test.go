package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"pgtrain/coordinator/client"
	"pgtrain/messages"
)

func sweepSpec(t *testing.T, sweep string, mutate func(m map[string]any)) []byte {
	return specJSON(t, func(m map[string]any) {
		m["model"] = json.RawMessage(`{"layers": [{"type": "dense", "units": 8, "activation": "relu"},
			{"type": "dropout", "rate": 0.1}, {"type": "dense", "units": 3, "activation": "softmax"}]}`)
		m["sweep"] = json.RawMessage(sweep)
		m["validation_split"] = 0.2
		m["range_rows"] = 100
		if mutate != nil {
			mutate(m)
		}
	})
}

func TestSweepRefusesBadVariants(t *testing.T) {
	e := newEnv(t)
	irisTable(t, e)
	r := start(t, e, Config{Limits: Limits{SweepVariants: 3}, ReadyMaxBytes: 1 << 30})
	ctx := context.Background()
	tests := []struct {
		name, sweep string
		mutate      func(m map[string]any)
		status      int
		field, msg  string
	}{
		{name: "empty", sweep: `[]`, status: 400, field: "sweep", msg: "at least one variant"},
		{name: "too many", sweep: `[{}, {}, {}, {}]`, status: 400, field: "sweep", msg: "4 variants is over this coordinator's limit of 3"},
		{name: "unknown field", sweep: `[{"seed": 1}, {"layers": 2}]`, status: 400, field: "sweep[1]", msg: `unknown field "layers"`},
		{name: "output width", sweep: `[{"units": [8, 2]}]`, status: 400, field: "sweep[0].units", msg: "3"},
		{name: "a size per dense layer", sweep: `[{"units": [8]}]`, status: 400, field: "sweep[0].units", msg: "1 sizes for a model of 2 Dense layers"},
		{name: "units over the limit", sweep: `[{"units": [100000, 3]}]`, status: 400, field: "sweep[0].units", msg: "limit"},
		{name: "dropout rate", sweep: `[{}, {"dropout": 1.5}]`, status: 400, field: "sweep[1].dropout", msg: "[0, 1)"},
		{name: "learning rate", sweep: `[{"learning_rate": -1}]`, status: 400, field: "sweep[0].learning_rate", msg: "positive"},
		{name: "optimizer", sweep: `[{"optimizer": {"name": "nope"}}]`, status: 400, field: "sweep[0].optimizer", msg: "nope"},
		{name: "monitor", sweep: `[{}]`, mutate: func(m map[string]any) { m["sweep_monitor"] = "val_auc" }, status: 400, field: "sweep_monitor", msg: "val_auc"},
		{name: "mode", sweep: `[{}]`, mutate: func(m map[string]any) { m["sweep_mode"] = "up" }, status: 400, field: "sweep_mode", msg: "up"},
		{name: "monitor without sweep", sweep: `null`, mutate: func(m map[string]any) { m["sweep_monitor"] = "loss" }, status: 400, field: "sweep_monitor", msg: "needs sweep"},
		{name: "warm start", sweep: `[{}]`, mutate: func(m map[string]any) { m["init_from"] = "some_job" }, status: 400, field: "sweep", msg: "init_from"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.cl.Submit(ctx, sweepSpec(t, tt.sweep, tt.mutate))
			ae := apiErr(t, err)
			if ae.Status != tt.status || ae.Field != tt.field || !strings.Contains(ae.Message, tt.msg) {
				t.Fatalf("got %d field %q: %s; want %d %s saying %q", ae.Status, ae.Field, ae.Message, tt.status, tt.field, tt.msg)
			}
		})
	}
	if n := len(r.c.order); n != 0 {
		t.Fatalf("%d jobs created by refused sweeps", n)
	}
}

func TestSweepRefusedWhenTheDataDoesNotFitReady(t *testing.T) {
	e := newEnv(t)
	irisTable(t, e)
	r := start(t, e, Config{ReadyMaxBytes: 32 << 10})
	_, err := r.cl.Submit(context.Background(), sweepSpec(t, `[{}, {"seed": 3}]`, nil))
	ae := apiErr(t, err)
	if ae.Status != http.StatusUnprocessableEntity || ae.Field != "sweep" || !strings.Contains(ae.Message, "--ready-max-bytes") {
		t.Fatalf("got %d field %q: %s; want 422 sweep", ae.Status, ae.Field, ae.Message)
	}
}

// Three variants, two trainers: each trainer claims a variant of its own and gets it back; a
// report names its variant and comes from its trainer; the window follows the slowest
// variant with a trainer; a trainer done with its variant claims the third; a silent
// trainer's variant goes to another; the job is done when every variant is, with the best by
// val_loss marked and every variant's model named.
func TestSweepVariantsClaimedReportedAndJudged(t *testing.T) {
	e := newEnv(t)
	irisTable(t, e)
	r := start(t, e, Config{Window: 1, LeaseTTL: time.Second, ReadyMaxBytes: 1 << 30})
	ctx := context.Background()
	st, err := r.cl.Submit(ctx, sweepSpec(t, `[{"learning_rate": 0.1}, {"units": [4, 3]}, {"seed": 9, "dropout": 0.5}]`, nil))
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.cl.Plan(ctx, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Replay || len(p.Ranges) < 4 || st.Sweep == nil || len(st.Sweep.Variants) != 3 || st.Sweep.Monitor != "val_loss" {
		t.Fatalf("replay %v, %d ranges, sweep %+v", p.Replay, len(p.Ranges), st.Sweep)
	}
	claim := func(trainer string, want int) {
		t.Helper()
		c, err := r.cl.Claim(ctx, trainer)
		if err != nil || c.JobID != st.ID || c.Variant == nil || *c.Variant != want {
			t.Fatalf("%s claims %+v (variant %v), %v; want variant %d", trainer, c, c.Variant, err, want)
		}
	}
	report := func(trainer string, variant int, pr messages.TrainerProgress) error {
		pr.TrainerID, pr.Variant = trainer, &variant
		return r.cl.ReportTrainer(ctx, st.ID, pr)
	}
	claim("t1", 0)
	claim("t2", 1)
	claim("t1", 0) // its own, again
	if err := report("t2", 0, messages.TrainerProgress{Consumed: 1}); err == nil {
		t.Fatal("t2 reported on t1's variant")
	}
	err = r.cl.ReportTrainer(ctx, st.ID, messages.TrainerProgress{TrainerID: "t1", Consumed: 1})
	if ae := apiErr(t, err); ae.Status != http.StatusBadRequest || ae.Field != "variant" {
		t.Fatalf("a report without its variant: %d %q", ae.Status, ae.Field)
	}

	// Window 1: one range ahead of the slowest variant with a trainer.
	order := p.EpochOrder(0)
	fetch := func(worker string, want int) {
		t.Helper()
		l := mustLease(t, r.cl, worker)
		if l.Range.Index != order[want] {
			t.Fatalf("%s leased range %d, want position %d (range %d)", worker, l.Range.Index, want, order[want])
		}
		if _, err := r.cl.ReportLease(ctx, l.ID, messages.LeaseProgress{WorkerID: worker, NextPage: 1, Rows: 1, Done: true}); err != nil {
			t.Fatal(err)
		}
	}
	fetch("w", 0)
	noLease(t, r.cl, "both variants at 0")
	if err := report("t1", 0, messages.TrainerProgress{Consumed: 2}); err != nil {
		t.Fatal(err)
	}
	noLease(t, r.cl, "variant 1 still at 0")
	if err := report("t2", 1, messages.TrainerProgress{Consumed: 1}); err != nil {
		t.Fatal(err)
	}
	fetch("w", 1)
	noLease(t, r.cl, "variant 1 at 1")
	if got := mustJob(t, r.cl, st.ID).Trainer; got.Epoch != 0 || got.Consumed != 1 {
		t.Fatalf("job position %+v, want the slowest variant's (0, 1)", got)
	}

	// Variant 0 ends (val_loss 0.5); t1 claims the third variant.
	vl := func(v float64) *messages.EpochResult {
		return &messages.EpochResult{Epoch: 1, Loss: v, ValLoss: &v}
	}
	if err := report("t1", 0, messages.TrainerProgress{Epoch: 2, Result: vl(0.5), Done: true}); err != nil {
		t.Fatal(err)
	}
	if err := report("t1", 0, messages.TrainerProgress{Epoch: 2, Done: true}); err != nil {
		t.Fatalf("a retried final report: %v", err)
	}
	claim("t1", 2)
	if err := report("t1", 2, messages.TrainerProgress{Epoch: 2, Result: vl(0.9), Done: true}); err != nil {
		t.Fatal(err)
	}
	if s := mustJob(t, r.cl, st.ID); s.State != messages.JobRunning || s.Sweep.Best != nil {
		t.Fatalf("with variant 1 running: %s, best %v", s.State, s.Sweep.Best)
	}
	// t2 goes silent: t3 takes variant 1 over, and t2's reports are refused.
	r.clock.advance(4 * time.Second)
	claim("t3", 1)
	if err := report("t2", 1, messages.TrainerProgress{Consumed: 2}); !errors.Is(err, client.ErrLeaseLost) {
		t.Fatalf("the silent trainer's report: %v", err)
	}
	if err := report("t3", 1, messages.TrainerProgress{Epoch: 2, Result: vl(0.2), Done: true}); err != nil {
		t.Fatal(err)
	}
	s := mustJob(t, r.cl, st.ID)
	if s.State != messages.JobDone || s.Sweep.Best == nil || *s.Sweep.Best != 1 || s.ModelPath != messages.VariantModelDir(st.ID, 1) {
		t.Fatalf("done sweep: %s, best %v, model %q; want variant 1", s.State, s.Sweep.Best, s.ModelPath)
	}
	for i, v := range s.Sweep.Variants {
		if v.State != "done" || v.Best != (i == 1) || v.ModelID != messages.VariantModelID(st.ID, i) || v.Value == nil {
			t.Errorf("variant %d: %+v", i, v)
		}
	}
	if c, err := r.cl.Claim(ctx, "t4"); err != nil || c.JobID != "" {
		t.Fatalf("claim after the sweep: %+v, %v", c, err)
	}
}

func mustJob(t *testing.T, cl *client.Client, id string) *messages.JobStatus {
	t.Helper()
	s, err := cl.Job(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
