package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
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
// report names its variant and comes from its trainer; a range is leased inside the window
// of any variant with a trainer; a trainer done with its variant claims the third; a silent
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

	// Window 1: one range ahead of each variant with a trainer (both in the job's order).
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
	fetch("w", 1) // variant 0's window: the range behind it first
	fetch("w", 2)
	noLease(t, r.cl, "variant 0 at 2, variant 1 at 0")
	if err := report("t2", 1, messages.TrainerProgress{Consumed: 1}); err != nil {
		t.Fatal(err)
	}
	noLease(t, r.cl, "variant 1 at 1, its window read")
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

// Variants with seeds of their own read the ranges in their own orders. With a window of one
// range and fewer trainers than variants, each range is leased inside the window of a variant
// (before any trainer, the first one's), the range a variant's trainer waits for is always
// leasable (one window in the job's order would deadlock here: variant 1 needs a range it
// does not hold), the ranges are read once, and the ranges strip marks a range trained when
// every variant with a trainer has trained it.
func TestSweepLeasesInEachVariantsOrder(t *testing.T) {
	e := newEnv(t)
	irisTable(t, e)
	r := start(t, e, Config{Window: 1, LeaseTTL: time.Minute, ReadyMaxBytes: 1 << 30})
	ctx := context.Background()
	st, err := r.cl.Submit(ctx, sweepSpec(t, `[{}, {"seed": 9}, {"seed": 23}]`, nil))
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.cl.Plan(ctx, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	n := len(p.Ranges)
	o0, o1 := p.ForVariant(0).EpochOrder(0), p.ForVariant(1).EpochOrder(0)
	if !p.Replay || n < 4 || o0[0] == o1[0] || o1[1] == o0[0] || o1[1] == o0[1] {
		t.Fatalf("replay %v, orders %v and %v: the test needs orders that differ from the start", p.Replay, o0, o1)
	}
	if !slices.Equal(o0, p.EpochOrder(0)) {
		t.Fatalf("variant 0 (no seed) reads in %v, the job's order is %v", o0, p.EpochOrder(0))
	}
	fetch := func(worker string) int {
		t.Helper()
		l := mustLease(t, r.cl, worker)
		if _, err := r.cl.ReportLease(ctx, l.ID, messages.LeaseProgress{WorkerID: worker, NextPage: 1, Rows: 1, Done: true}); err != nil {
			t.Fatal(err)
		}
		return l.Range.Index
	}
	report := func(trainer string, variant int, pr messages.TrainerProgress) {
		t.Helper()
		pr.TrainerID, pr.Variant = trainer, &variant
		if err := r.cl.ReportTrainer(ctx, st.ID, pr); err != nil {
			t.Fatal(err)
		}
	}

	// No trainer yet: the window of variant 0, which the first trainer claims.
	if got := fetch("w"); got != o0[0] {
		t.Fatalf("before any trainer: range %d, want %d", got, o0[0])
	}
	noLease(t, r.cl, "no trainer, variant 0's window read")
	for i, tr := range []string{"t1", "t2"} {
		if c, err := r.cl.Claim(ctx, tr); err != nil || c.Variant == nil || *c.Variant != i {
			t.Fatalf("%s claims %+v, %v", tr, c, err)
		}
	}
	if got := fetch("w"); got != o1[0] {
		t.Fatalf("variant 1 claimed: range %d, want its first, %d", got, o1[0])
	}
	noLease(t, r.cl, "both variants at 0")

	// Step both variants through the epoch; each step's leases lie inside the windows, and
	// after them neither variant waits for a range.
	read := map[int]bool{o0[0]: true, o1[0]: true}
	for k := 1; k < n; k++ {
		report("t1", 0, messages.TrainerProgress{Consumed: k})
		report("t2", 1, messages.TrainerProgress{Consumed: k})
		for {
			l, err := r.cl.Lease(ctx, "w")
			if err != nil {
				t.Fatal(err)
			}
			if l == nil {
				break
			}
			got := l.Range.Index
			if read[got] || (got != o0[k] && got != o1[k]) {
				t.Fatalf("at position %d: leased range %d (read before: %v), want %d or %d", k, got, read[got], o0[k], o1[k])
			}
			read[got] = true
			if _, err := r.cl.ReportLease(ctx, l.ID, messages.LeaseProgress{WorkerID: "w", NextPage: 1, Rows: 1, Done: true}); err != nil {
				t.Fatal(err)
			}
		}
		if !read[o0[k]] || !read[o1[k]] {
			t.Fatalf("at position %d: variant 0 waits for %d (read %v), variant 1 for %d (read %v)", k, o0[k], read[o0[k]], o1[k], read[o1[k]])
		}
		if k == n-2 {
			// Trained: what both have read before position n-2.
			rs, err := r.cl.Ranges(ctx, st.ID)
			if err != nil {
				t.Fatal(err)
			}
			for _, got := range rs.Ranges {
				want := slices.Index(o0, got.Index) < k && slices.Index(o1, got.Index) < k
				if (got.State == messages.RangeTrained) != want {
					t.Errorf("range %d is %s; trained by both variants: %v", got.Index, got.State, want)
				}
			}
		}
	}
	s := mustJob(t, r.cl, st.ID)
	if len(read) != n || s.Fetch.Done != n || s.Fetch.Grants != n {
		t.Fatalf("%d ranges read, fetch %+v; want each of %d read once", len(read), s.Fetch, n)
	}
	// Variant 0 ends; t1 takes variant 2, which replays READY: nothing more to read.
	report("t1", 0, messages.TrainerProgress{Epoch: 2, Done: true})
	if c, err := r.cl.Claim(ctx, "t1"); err != nil || c.Variant == nil || *c.Variant != 2 {
		t.Fatalf("t1 claims %+v, %v; want variant 2", c, err)
	}
	noLease(t, r.cl, "variant 2 at 0, every range read")
}
