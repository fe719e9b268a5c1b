package trainer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"pgtrain/coordinator/client"
	"pgtrain/internal/bus"
	"pgtrain/internal/testenv"
	"pgtrain/messages"
)

// batchRec is one batch as the model saw it.
type batchRec struct {
	Epoch    int
	Training bool
	Keys     []int64
}

// recorder collects the batches of a run and lets a test act at a chosen batch.
type recorder struct {
	mu      sync.Mutex
	batches []batchRec
	at      func(n int, rec batchRec) // called before the model sees batch n (0-based)
}

func (r *recorder) observe(epoch int, training bool, keys []int64) {
	r.mu.Lock()
	rec := batchRec{Epoch: epoch, Training: training, Keys: slices.Clone(keys)}
	r.batches = append(r.batches, rec)
	n := len(r.batches) - 1
	at := r.at
	r.mu.Unlock()
	if at != nil {
		at(n, rec)
	}
}

// trainOnce runs a trainer with Once until it returns.
func trainOnce(t *testing.T, ctx context.Context, b *bus.Bus, c Coordinator, cfg Config, rec *recorder) error {
	t.Helper()
	cfg.Once = true
	tr, err := New(cfg, b, c, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	if rec != nil {
		tr.observe = rec.observe
	}
	return tr.Run(ctx)
}

func storePlan(t testing.TB, b *bus.Bus, p *messages.Plan) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bus.PutPlan(ctx, b.State, p); err != nil {
		t.Fatal(err)
	}
}

func finalModel(t *testing.T, outDir, job string) []byte {
	t.Helper()
	ck, err := loadCheckpoint(filepath.Join(outDir, job), job)
	if err != nil || ck == nil {
		t.Fatalf("final checkpoint of %s: %v", job, err)
	}
	if !ck.Position.Finished {
		t.Fatalf("checkpoint of %s is not finished: %+v", job, ck.Position)
	}
	return ck.Model
}

func readySubjects(t *testing.T, b *bus.Bus, filter string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := b.Ready.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		t.Fatal(err)
	}
	return len(info.State.Subjects)
}

// without the wall-clock fields, which are the only ones allowed to differ between runs.
func withoutTimes(rs []messages.EpochResult) []messages.EpochResult {
	out := slices.Clone(rs)
	for i := range out {
		out[i].Seconds, out[i].RowsPerSecond = 0, 0
	}
	return out
}

func TestTrainingOrderIsAPureFunctionOfDataSpecAndSeed(t *testing.T) {
	tests := []struct {
		name   string
		replay bool
	}{
		{name: "re-read every epoch", replay: false},
		{name: "replay READY", replay: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := testBus(t)
			out := t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			var seqs [2][]batchRec
			var models [2][]byte
			var results [2][]messages.EpochResult
			for i, job := range []string{"order-a", "order-b"} {
				d := dataset{job: job, rangeRows: []int{23, 17, 31, 9, 20, 14}, validation: 2, pageRows: 6,
					epochs: 3, batch: 8, seed: 42, replay: tc.replay}
				p := d.plan()
				storePlan(t, b, p)
				wait := publishShuffled(t, b, d.batches(p), uint64(i+1))
				c := newTestCoordinator(job)
				rec := &recorder{}
				if err := trainOnce(t, ctx, b, c, Config{TrainerID: "t-" + job, OutDir: out, Prefetch: 2}, rec); err != nil {
					t.Fatal(err)
				}
				if err := wait(); err != nil {
					t.Fatal(err)
				}
				seqs[i], models[i] = rec.batches, finalModel(t, out, job)
				reports, failed, done := c.snapshot()
				if len(failed) > 0 || done[job] == "" {
					t.Fatalf("failed %v, done %v", failed, done)
				}
				results[i] = checkRun(t, p, rec.batches, reports)
				checkHistory(t, filepath.Join(out, job, "history.json"), results[i])
				if _, err := os.Stat(filepath.Join(out, filepath.FromSlash(done[job]), "model.json")); err != nil {
					t.Fatalf("exported model: %v", err)
				}
				if n := readySubjects(t, b, b.Names().ReadyJobSubjects(job)); n != 0 {
					t.Fatalf("READY still holds %d batches of the finished job", n)
				}
			}
			if !reflect.DeepEqual(seqs[0], seqs[1]) {
				t.Fatalf("the two publish orders gave different example sequences")
			}
			if !slices.Equal(models[0], models[1]) {
				t.Fatalf("the two publish orders gave different weights")
			}
			if !reflect.DeepEqual(withoutTimes(results[0]), withoutTimes(results[1])) {
				t.Fatalf("the two publish orders gave different epoch results:\n%+v\n%+v", results[0], results[1])
			}
		})
	}
}

// checkRun checks one run's batches and reports against the plan: every training row once
// per epoch, shuffled, in the plan's range order, full batches but for the epoch's last;
// validation in key order; progress after every range; results with the plan's checksums.
func checkRun(t *testing.T, p *messages.Plan, batches []batchRec, reports []messages.TrainerProgress) []messages.EpochResult {
	t.Helper()
	rangeOf := func(k int64) int {
		for i, r := range p.Ranges {
			if k >= r.Lo && k <= r.Hi {
				return i
			}
		}
		t.Fatalf("key %d in no range", k)
		return -1
	}
	bs := p.Spec.BatchSize
	var prevTrain []int64
	for e := 0; e < p.Spec.Epochs; e++ {
		pos := map[int]int{}
		for i, r := range p.EpochOrder(e) {
			pos[r] = i
		}
		var train, valid []int64
		var trainSizes, validSizes []int
		for _, bt := range batches {
			if bt.Epoch != e {
				continue
			}
			if bt.Training {
				train = append(train, bt.Keys...)
				trainSizes = append(trainSizes, len(bt.Keys))
			} else {
				valid = append(valid, bt.Keys...)
				validSizes = append(validSizes, len(bt.Keys))
			}
		}
		var seen, seenValid messages.KeyChecksum
		last := -1
		for _, k := range train {
			seen.Add(k)
			r := rangeOf(k)
			if r >= p.TrainingRanges() || pos[r] < last {
				t.Fatalf("epoch %d: key %d of range %d (position %d) after position %d", e, k, r, pos[r], last)
			}
			last = pos[r]
		}
		for _, k := range valid {
			seenValid.Add(k)
		}
		if seen != p.Expected || seenValid != p.ExpectedValid {
			t.Fatalf("epoch %d: saw %+v/%+v, plan %+v/%+v", e, seen, seenValid, p.Expected, p.ExpectedValid)
		}
		if u := len(slices.Compact(slices.Sorted(slices.Values(train)))); u != len(train) {
			t.Fatalf("epoch %d: %d training rows but %d distinct keys", e, len(train), u)
		}
		if !slices.IsSorted(valid) {
			t.Fatalf("epoch %d: validation rows not in key order", e)
		}
		if slices.IsSorted(train) || slices.Equal(train, prevTrain) {
			t.Fatalf("epoch %d: training rows not shuffled, or shuffled as the epoch before", e)
		}
		prevTrain = train
		for what, sizes := range map[string][]int{"training": trainSizes, "validation": validSizes} {
			for i, n := range sizes {
				if n != bs && i != len(sizes)-1 || n > bs || n == 0 {
					t.Fatalf("epoch %d: %s batch %d of %d has %d rows (batch size %d)", e, what, i, len(sizes), n, bs)
				}
			}
		}
		if len(train)%bs != 0 && trainSizes[len(trainSizes)-1] != len(train)%bs {
			t.Fatalf("epoch %d: last batch %d rows, want %d", e, trainSizes[len(trainSizes)-1], len(train)%bs)
		}
	}
	// Reports: the resume report at (0, 0), then one per range, the epoch's last with its
	// result, then Done.
	var results []messages.EpochResult
	want := 1
	for _, r := range reports {
		if r.Done {
			continue
		}
		if r.Result != nil {
			results = append(results, *r.Result)
			if r.Result.Seen != p.Expected || r.Result.SeenValid != p.ExpectedValid || r.Result.ValLoss == nil || r.Result.Loss <= 0 {
				t.Fatalf("epoch result %+v", r.Result)
			}
		}
	}
	prev := reports[0]
	for _, r := range reports[1:] {
		if r.Done {
			break
		}
		if r.Epoch == prev.Epoch && r.Consumed == prev.Consumed && r.Result == nil {
			continue // a heartbeat
		}
		prev = r
		e, c := (want-1)/len(p.Ranges), (want-1)%len(p.Ranges)+1
		if r.Epoch != e || r.Consumed != c || (r.Result != nil) != (c == len(p.Ranges)) {
			t.Fatalf("report %d: epoch %d consumed %d result %v, want epoch %d consumed %d", want, r.Epoch, r.Consumed, r.Result != nil, e, c)
		}
		want++
	}
	if want-1 != p.Spec.Epochs*len(p.Ranges) || !reports[len(reports)-1].Done {
		t.Fatalf("%d range reports, want %d, then Done", want-1, p.Spec.Epochs*len(p.Ranges))
	}
	if len(results) != p.Spec.Epochs {
		t.Fatalf("%d epoch results, want %d", len(results), p.Spec.Epochs)
	}
	return results
}

func readHistory(t *testing.T, path string) []messages.EpochResult {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rs []messages.EpochResult
	if err := json.Unmarshal(b, &rs); err != nil {
		t.Fatal(err)
	}
	return rs
}

func checkHistory(t *testing.T, path string, want []messages.EpochResult) {
	t.Helper()
	if got := readHistory(t, path); !reflect.DeepEqual(got, want) {
		t.Fatalf("history.json:\n%+v\nwant\n%+v", got, want)
	}
}

func TestEpochLossIsTheRowWeightedMeanOfBatchLosses(t *testing.T) {
	b := testBus(t)
	out := t.TempDir()
	// 3 + 5 training rows in batches of 3: 3, 3, 2 rows. The loss of a batch is the loss
	// before its own update, so replaying the batches on a fresh model gives the same
	// numbers.
	d := dataset{job: "weighted", rangeRows: []int{3, 5, 4}, validation: 1, pageRows: 2, epochs: 1, batch: 3, seed: 9, replay: true}
	p := d.plan()
	storePlan(t, b, p)
	for _, rb := range d.batches(p) {
		if err := publish(context.Background(), b, rb); err != nil {
			t.Fatal(err)
		}
	}
	c := newTestCoordinator(d.job)
	rec := &recorder{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := trainOnce(t, ctx, b, c, Config{TrainerID: "w", OutDir: out}, rec); err != nil {
		t.Fatal(err)
	}
	m, err := newGoModel(p)
	if err != nil {
		t.Fatal(err)
	}
	var sum, vsum, msum, vmsum float64
	var rows, vrows int
	for _, bt := range rec.batches {
		x, y := make([]float32, 0), make([]float32, 0)
		for _, k := range bt.Keys {
			xr, yr := row(k)
			x, y = append(x, xr[:]...), append(y, yr)
		}
		if bt.Training {
			out, err := m.TrainOnBatch(x, y, len(bt.Keys))
			if err != nil {
				t.Fatal(err)
			}
			sum += out["loss"] * float64(len(bt.Keys))
			msum += out["mae"] * float64(len(bt.Keys))
			rows += len(bt.Keys)
		} else {
			out, err := m.Evaluate(x, y, len(bt.Keys))
			if err != nil {
				t.Fatal(err)
			}
			vsum += out["loss"] * float64(len(bt.Keys))
			vmsum += out["mae"] * float64(len(bt.Keys))
			vrows += len(bt.Keys)
		}
	}
	if got := len(rec.batches); got != 3+2 || rows != 8 || vrows != 4 {
		t.Fatalf("%d batches, %d training rows, %d validation rows; want 3+2, 8, 4", got, rows, vrows)
	}
	reports, _, _ := c.snapshot()
	var res *messages.EpochResult
	for _, r := range reports {
		if r.Result != nil {
			res = r.Result
		}
	}
	if res == nil || res.Loss != sum/8 || res.Metrics["mae"] != msum/8 || *res.ValLoss != vsum/4 || res.ValMetrics["mae"] != vmsum/4 {
		t.Fatalf("epoch result %+v, want loss %v val_loss %v", res, sum/8, vsum/4)
	}
}

func TestChecksumMismatchFailsTheJobUnlessDriftIsAllowed(t *testing.T) {
	tests := []struct {
		name       string
		tamper     func(p *messages.Plan)
		allowDrift bool
		wantErr    error
	}{
		{name: "as planned", tamper: func(*messages.Plan) {}},
		{name: "one row more planned", tamper: func(p *messages.Plan) { p.Expected.Add(1_000_003) }, wantErr: ErrChecksumMismatch},
		{name: "other validation keys", tamper: func(p *messages.Plan) { p.ExpectedValid.Sum++ }, wantErr: ErrChecksumMismatch},
		{name: "drift allowed", tamper: func(p *messages.Plan) { p.Expected.Add(1_000_003) }, allowDrift: true},
	}
	b := testBus(t)
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			job := "sum" + string(rune('a'+i))
			d := dataset{job: job, rangeRows: []int{7, 5, 6}, validation: 1, pageRows: 4, epochs: 2, batch: 4, seed: 5}
			p := d.plan()
			tc.tamper(p)
			storePlan(t, b, p)
			for _, rb := range d.batches(p) {
				if err := publish(context.Background(), b, rb); err != nil {
					t.Fatal(err)
				}
			}
			c := newTestCoordinator(job)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := trainOnce(t, ctx, b, c, Config{TrainerID: job, OutDir: t.TempDir(), AllowDrift: tc.allowDrift}, nil)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("Run: err = %v, want %v", err, tc.wantErr)
			}
			_, failed, done := c.snapshot()
			if tc.wantErr != nil && (failed[job] == "" || done[job] != "") {
				t.Fatalf("want the job failed at the coordinator; failed %v done %v", failed, done)
			}
			if tc.wantErr == nil && (len(failed) != 0 || done[job] == "") {
				t.Fatalf("want the job done; failed %v done %v", failed, done)
			}
		})
	}
}

func TestResumeGivesBitIdenticalWeights(t *testing.T) {
	tests := []struct {
		name     string
		replay   bool
		stopAt   int  // batch at which the first trainer is stopped
		crash    bool // restore the checkpoint as it was at that batch, as after kill -9
		controls bool // with callbacks
	}{
		{name: "cancel mid-range, re-reading", stopAt: 13},
		{name: "cancel mid-range, replay", replay: true, stopAt: 27},
		{name: "cancel in validation", replay: true, stopAt: 11},
		{name: "kill after a range checkpoint, replay", replay: true, stopAt: 17, crash: true},
		{name: "kill in the last epoch, replay", replay: true, stopAt: 38, crash: true},
		// The callbacks' state resumes too: the same rate reductions, the same epoch kept and
		// the same early stop (after the second of three epochs).
		{name: "kill after a range checkpoint, with callbacks", replay: true, stopAt: 17, crash: true, controls: true},
		{name: "cancel in the second epoch, with callbacks", stopAt: 21, controls: true},
	}
	b := testBus(t)
	withControls := func(s *messages.JobSpec) {
		zero := 0
		s.ValidationSplit = 0.2 // the plan holds out ranges itself; this lets val_ monitors validate
		s.ReduceLROnPlateau = &messages.ReduceLROnPlateauSpec{Monitor: "loss", Mode: "max", Factor: 0.5, Patience: &zero}
		s.ModelCheckpoint = &messages.ModelCheckpointSpec{Monitor: "val_loss"}
		s.EarlyStopping = &messages.EarlyStoppingSpec{Monitor: "loss", Mode: "max", Patience: 1, RestoreBestWeights: true}
	}
	type refKey struct{ replay, controls bool }
	dsFor := func(job string, k refKey) dataset {
		d := dataset{job: job, rangeRows: []int{23, 17, 31, 9, 20, 14}, validation: 2, pageRows: 6,
			epochs: 3, batch: 8, seed: 7, replay: k.replay}
		if k.controls {
			d.controls = withControls
		}
		return d
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	refs := map[refKey][]byte{}
	refResults := map[refKey][]messages.EpochResult{}
	for _, k := range []refKey{{false, false}, {true, false}, {false, true}, {true, true}} {
		job := "ref-" + map[bool]string{false: "reread", true: "replay"}[k.replay] + map[bool]string{false: "", true: "-controls"}[k.controls]
		d := dsFor(job, k)
		p := d.plan()
		storePlan(t, b, p)
		for _, rb := range d.batches(p) {
			if err := publish(ctx, b, rb); err != nil {
				t.Fatal(err)
			}
		}
		out := t.TempDir()
		c := newTestCoordinator(job)
		if err := trainOnce(t, ctx, b, c, Config{TrainerID: job, OutDir: out}, nil); err != nil {
			t.Fatal(err)
		}
		refs[k] = finalModel(t, out, job)
		refResults[k] = readHistory(t, filepath.Join(out, job, "history.json"))
		if k.controls && len(refResults[k]) != 2 {
			t.Fatalf("%s: %d epochs, want early stopping after 2", job, len(refResults[k]))
		}
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			job := "resume" + string(rune('a'+i))
			k := refKey{tc.replay, tc.controls}
			d := dsFor(job, k)
			p := d.plan()
			storePlan(t, b, p)
			wait := publishShuffled(t, b, d.batches(p), uint64(10+i))
			out := t.TempDir()
			ckPath := checkpointPath(filepath.Join(out, job))
			c := newTestCoordinator(job)
			var saved []byte
			rctx, stop := context.WithCancel(ctx)
			rec := &recorder{at: func(n int, rec batchRec) {
				if n != tc.stopAt {
					return
				}
				if tc.crash {
					var err error
					if saved, err = os.ReadFile(ckPath); err != nil {
						t.Error(err)
					}
				}
				stop()
			}}
			if err := trainOnce(t, rctx, b, c, Config{TrainerID: job, OutDir: out}, rec); err != nil {
				t.Fatalf("first trainer: %v", err)
			}
			stop()
			if _, _, done := c.snapshot(); done[job] != "" {
				t.Fatalf("the first trainer finished the job; stop earlier")
			}
			if tc.crash {
				if err := os.WriteFile(ckPath, saved, 0o644); err != nil {
					t.Fatal(err)
				}
			} else {
				ck, err := loadCheckpoint(filepath.Join(out, job), job)
				if err != nil || ck == nil {
					t.Fatalf("no checkpoint after the stop: %v", err)
				}
				if ck.Position.Offset == 0 {
					t.Fatalf("stopped at %+v, want mid-range", ck.Position)
				}
			}
			if err := trainOnce(t, ctx, b, c, Config{TrainerID: job, OutDir: out}, &recorder{}); err != nil {
				t.Fatalf("second trainer: %v", err)
			}
			if err := wait(); err != nil {
				t.Fatal(err)
			}
			if got := finalModel(t, out, job); !slices.Equal(got, refs[k]) {
				t.Fatalf("resumed weights differ from the uninterrupted run's")
			}
			rs := readHistory(t, filepath.Join(out, job, "history.json"))
			if !reflect.DeepEqual(withoutTimes(rs), withoutTimes(refResults[k])) {
				t.Fatalf("resumed history differs:\n%+v\n%+v", rs, refResults[k])
			}
		})
	}
}

func TestConsumedRangesArePurgedOnlyWhenEpochsReRead(t *testing.T) {
	tests := []struct {
		name   string
		replay bool
	}{
		{name: "re-read", replay: false},
		{name: "replay", replay: true},
	}
	b := testBus(t)
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			job := "purge" + string(rune('a'+i))
			d := dataset{job: job, rangeRows: []int{9, 9, 9, 9}, validation: 1, pageRows: 4, epochs: 2, batch: 4, seed: 2, replay: tc.replay}
			p := d.plan()
			storePlan(t, b, p)
			for _, rb := range d.batches(p) {
				if err := publish(context.Background(), b, rb); err != nil {
					t.Fatal(err)
				}
			}
			perRange := 3 // pages of 4 rows for 9 rows
			var checked bool
			var errs []string
			rec := &recorder{}
			rec.at = func(n int, bt batchRec) {
				if bt.Epoch != 1 || checked {
					return
				}
				checked = true
				// Epoch 1 has begun: every range of epoch 0 was consumed.
				left := readySubjects(t, b, b.Names().ReadyPassSubjects(job, 0))
				want := 0
				if tc.replay {
					want = len(p.Ranges) * perRange
				}
				if left != want {
					errs = append(errs, fmt.Sprintf("pass 0 holds %d batches at epoch 1, want %d", left, want))
				}
			}
			c := newTestCoordinator(job)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := trainOnce(t, ctx, b, c, Config{TrainerID: job, OutDir: t.TempDir()}, rec); err != nil {
				t.Fatal(err)
			}
			if !checked || len(errs) > 0 {
				t.Fatalf("checked %v: %v", checked, errs)
			}
			if n := readySubjects(t, b, b.Names().ReadyJobSubjects(job)); n != 0 {
				t.Fatalf("READY holds %d batches of the finished job", n)
			}
		})
	}
}

func TestHeartbeatWhileWaitingAndStopWhenTheJobIsGone(t *testing.T) {
	b := testBus(t)
	d := dataset{job: "beat", rangeRows: []int{6, 6, 6}, pageRows: 3, epochs: 1, batch: 4, seed: 4}
	p := d.plan()
	storePlan(t, b, p)
	// Everything but the last page of the epoch's last range: the trainer trains the rest,
	// then waits.
	order := p.EpochOrder(0)
	for _, rb := range d.batches(p) {
		if rb.Range == order[len(order)-1] && rb.Last {
			continue
		}
		if err := publish(context.Background(), b, rb); err != nil {
			t.Fatal(err)
		}
	}
	c := newTestCoordinator(d.job)
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		errc <- trainOnce(t, ctx, b, c, Config{TrainerID: "beat", OutDir: out, Heartbeat: 20 * time.Millisecond}, nil)
	}()
	// A start report and 2 range reports, then heartbeats repeating the last position. A
	// heartbeat may also fall between the first reports on a slow machine: it repeats the
	// position of its time, so the positions never go back.
	atLast := func(reports []messages.TrainerProgress) int {
		for i, r := range reports {
			if r.Consumed == 2 {
				return i
			}
		}
		return len(reports)
	}
	testenv.Eventually(t, 10*time.Second, "heartbeats while waiting for data", func() bool {
		reports, _, _ := c.snapshot()
		return len(reports)-atLast(reports) >= 4
	})
	reports, _, _ := c.snapshot()
	for i, r := range reports {
		if i > 0 && r.Consumed < reports[i-1].Consumed {
			t.Fatalf("report %d %+v went back from consumed %d", i, r, reports[i-1].Consumed)
		}
	}
	for _, r := range reports[atLast(reports):] {
		if r.Epoch != 0 || r.Consumed != 2 || r.Result != nil || r.TrainerID != "beat" {
			t.Fatalf("heartbeat %+v, want the last position (epoch 0, consumed 2)", r)
		}
	}
	c.mu.Lock()
	c.reportErr = fmt.Errorf("POST /v1/jobs/beat/progress: trained by another: %w", client.ErrLeaseLost)
	c.mu.Unlock()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrJobGone) {
			t.Fatalf("Run: err = %v, want ErrJobGone", err)
		}
	case <-ctx.Done():
		t.Fatal("the trainer kept going after the coordinator took the job away")
	}
	if _, failed, _ := c.snapshot(); len(failed) != 0 {
		t.Fatalf("a job taken away must not be failed by this trainer: %v", failed)
	}
	ck, err := loadCheckpoint(filepath.Join(out, d.job), d.job)
	if err != nil || ck == nil || ck.Position.Consumed != 2 {
		t.Fatalf("checkpoint %+v, %v; want one at 2 consumed ranges", ck, err)
	}
}
