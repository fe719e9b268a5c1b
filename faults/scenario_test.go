package faults

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"pgtrain/messages"
)

// mode is how later epochs get their data.
type mode struct {
	name          string
	readyMaxBytes int64
	replay        bool
}

var (
	// replayMode: READY holds the whole table; PostgreSQL is read once.
	replayMode = mode{"replay", replayMaxBytes, true}
	// rereadMode: READY is smaller than the table; every epoch reads PostgreSQL again.
	rereadMode = mode{"re-read", rereadMaxBytes, false}
)

// jobTimeout bounds one scenario's job: a clean job over the default table takes seconds,
// a job that loses a page never ends, and this is how the suite says so. It grows with the
// table (PGTRAIN_FAULTS_ROWS). stallTimeout says it sooner: every recovery (a lease TTL, a
// RAW ack wait, a restart) takes seconds, so a trainer that has not moved for this long is
// waiting for a batch that will never come.
const stallTimeout = time.Minute

func jobTimeout() time.Duration {
	return 3 * time.Minute * time.Duration(max(1, (rows+199_999)/200_000))
}

// scenario is one job run with one kind of fault.
type scenario struct {
	name string
	// fault is the scenario table's description of what is injected, and when.
	fault string
	mode  mode
	// table and consistency change the job (default: the shared table, the coordinator's
	// default consistency).
	table       string
	consistency string
	// spec makes the job spec (default jobSpec, keyed by key).
	spec func(tbl, consistency string) []byte
	// key is the job's key column (default "id").
	key  string
	opts func(*clusterOptions)
	// prepare runs once the cluster is up, before the job is submitted (r has no job yet).
	prepare func(r *runCtx) error
	// inject runs while the job runs; it returns once the fault is injected (and, for a
	// restart, once the process is back). An error fails the scenario.
	inject func(r *runCtx) error
	// check runs after the job ended, before the cluster stops.
	check func(t *testing.T, r *runCtx, o *outcome)
	// rawOnce: RAW must accept each page exactly once, as in the clean run. Not asserted
	// across a NATS restart, where a page published just before the restart can be
	// accepted again once its first copy is consumed (READY still keeps one).
	rawOnce bool
}

// runCtx is what an injector and a check see.
type runCtx struct {
	c     *cluster
	jobID string
	plan  *messages.Plan
	done  chan struct{} // closed when the job ended

	mu       sync.Mutex
	notes    []string
	failover time.Duration // the longest a stream went without a leader after a kill
}

func (r *runCtx) note(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// waitStatus polls the job's status until cond holds, the job ends, or timeout passes.
func (r *runCtx) waitStatus(what string, timeout time.Duration, cond func(*messages.JobStatus) bool) (*messages.JobStatus, error) {
	deadline := time.Now().Add(timeout)
	for {
		st, err := r.c.status(r.jobID)
		if err == nil && cond(st) {
			return st, nil
		}
		if err == nil && (st.State == messages.JobDone || st.State == messages.JobFailed) {
			return st, fmt.Errorf("the job ended (%s) before %s", st.State, what)
		}
		if time.Now().After(deadline) {
			return st, fmt.Errorf("timed out after %s waiting for %s (last error %v)", timeout, what, err)
		}
		time.Sleep(20 * time.Millisecond) // polling interval of a condition with a deadline
	}
}

// atPosition is a condition on the trainer's place: at least `consumed` ranges into epoch
// `epoch` (0-based), or further.
func atPosition(epoch, consumed int) func(*messages.JobStatus) bool {
	return func(st *messages.JobStatus) bool {
		return st.Trainer.Epoch > epoch || (st.Trainer.Epoch == epoch && st.Trainer.Consumed >= consumed)
	}
}

// outcome is what a scenario measured, for the checks and the summary table.
type outcome struct {
	scenario, fault, mode string
	status                *messages.JobStatus
	plan                  *messages.Plan
	bus                   *messages.BusStatus
	weights               []byte
	elapsed               time.Duration
	rowsChecked           int64
	rawDuplicates         int // pages a fetcher re-published that RAW dropped by message id
	readyDuplicates       int // batches READY refused as already there
	notes                 []string
	failed                bool
	// Of the replicated bus's scenarios: how long the killed node's stream went without a
	// leader, and whether the weights are the clean run's.
	natsNodes    int
	failover     time.Duration
	weightsEqual bool
}

var (
	summaryMu sync.Mutex
	summary   []*outcome
	refs      = map[string]*outcome{}
)

// reference is the clean run of a mode, run once and shared by every scenario of it.
func reference(t *testing.T, m mode) *outcome {
	t.Helper()
	summaryMu.Lock()
	ref := refs[m.name]
	summaryMu.Unlock()
	if ref != nil {
		return ref
	}
	ok := t.Run("reference "+m.name, func(t *testing.T) {
		ref = runScenario(t, cleanScenario(m), nil)
	})
	if !ok || ref == nil {
		t.Fatalf("the clean %s run failed; nothing to compare with", m.name)
	}
	summaryMu.Lock()
	refs[m.name] = ref
	summaryMu.Unlock()
	return ref
}

func cleanScenario(m mode) scenario {
	return scenario{name: "clean (" + m.name + ")", fault: "none: the reference run", mode: m, rawOnce: true}
}

// runScenario starts a cluster, runs the job while sc.inject injects its fault, and checks
// every guarantee against SQL and against ref (nil for a reference run itself).
func runScenario(t *testing.T, sc scenario, ref *outcome) *outcome {
	t.Helper()
	ctx := context.Background()
	o := &outcome{scenario: sc.name, fault: sc.fault, mode: sc.mode.name}
	defer func() {
		o.failed = t.Failed()
		summaryMu.Lock()
		summary = append(summary, o)
		summaryMu.Unlock()
	}()
	opts := clusterOptions{readyMaxBytes: sc.mode.readyMaxBytes}
	if sc.opts != nil {
		sc.opts(&opts)
	}
	o.natsNodes = max(opts.natsNodes, 1)
	c := startCluster(t, opts)
	tbl := sc.table
	if tbl == "" {
		tbl = table
	}
	r := &runCtx{c: c, done: make(chan struct{})}
	if sc.prepare != nil {
		if err := sc.prepare(r); err != nil {
			t.Fatalf("preparing the cluster: %v", err)
		}
	}
	start := time.Now()
	key := sc.key
	if key == "" {
		key = "id"
	}
	spec := sc.spec
	if spec == nil {
		spec = func(tbl, consistency string) []byte { return sizedJobSpec(tbl, key, consistency, 10000, 1000) }
	}
	st, err := c.client.Submit(ctx, spec(tbl, sc.consistency))
	if err != nil {
		t.Fatalf("submitting: %v", err)
	}
	plan, err := c.client.Plan(ctx, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Replay != sc.mode.replay {
		t.Fatalf("the plan's replay is %v; the %s mode wants %v (READY limit %d bytes)", plan.Replay, sc.mode.name, sc.mode.replay, sc.mode.readyMaxBytes)
	}
	// What SQL says the trainer must see in every epoch, taken before any fault (and, for
	// the live-table scenario, before the table changes).
	train := plan.TrainingRanges()
	checksum := func(from, to int) messages.KeyChecksum {
		t.Helper()
		var c messages.KeyChecksum
		var err error
		if plan.KeyColumns != nil {
			c, err = typedChecksum(ctx, tbl, plan, from, to)
		} else {
			c, err = sqlChecksum(ctx, tbl, plan.Ranges[from].Lo, plan.Ranges[to].Hi)
		}
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	wantTrain, wantValid := checksum(0, train-1), checksum(train, len(plan.Ranges)-1)
	if wantTrain != plan.Expected || wantValid != plan.ExpectedValid {
		t.Fatalf("the plan expects %+v / %+v, SQL says %+v / %+v", plan.Expected, plan.ExpectedValid, wantTrain, wantValid)
	}

	r.jobID, r.plan = st.ID, plan
	injected := make(chan error, 1)
	if sc.inject != nil {
		go func() { injected <- sc.inject(r) }()
	} else {
		injected <- nil
	}
	var final *messages.JobStatus
	injectDone := false
	deadline := start.Add(jobTimeout())
	var lastPos messages.TrainerState
	lastMove := time.Now()
	for final == nil {
		if !injectDone {
			select {
			case err := <-injected:
				injectDone = true
				if err != nil {
					close(r.done)
					t.Fatalf("injecting the fault: %v", err)
				}
			default:
			}
		}
		s, err := c.status(st.ID)
		switch {
		case err != nil:
			t.Logf("reading the job status: %v", err)
		case s.State == messages.JobDone || s.State == messages.JobFailed:
			final = s
			continue
		case s.Trainer.Epoch != lastPos.Epoch || s.Trainer.Consumed != lastPos.Consumed || s.Trainer.Rows != lastPos.Rows:
			lastPos, lastMove = s.Trainer, time.Now()
		case time.Since(lastMove) > stallTimeout:
			close(r.done)
			t.Fatalf("the job stalled: the trainer has not moved from epoch %d, %d ranges for %s (a batch that never comes); status %+v",
				lastPos.Epoch+1, lastPos.Consumed, stallTimeout, s)
		}
		if time.Now().After(deadline) {
			close(r.done)
			t.Fatalf("the job did not finish within %s; last status %+v", jobTimeout(), s)
		}
		time.Sleep(50 * time.Millisecond) // polling interval of a condition with a deadline
	}
	o.elapsed = time.Since(start)
	close(r.done)
	if !injectDone {
		select {
		case err := <-injected:
			if err != nil {
				t.Fatalf("injecting the fault: %v", err)
			}
		case <-time.After(time.Minute):
			t.Fatal("the fault injector did not return after the job ended")
		}
	}
	o.status, o.plan = final, plan
	if final.State != messages.JobDone {
		t.Fatalf("job %s ended %s: %s", final.ID, final.State, final.Error)
	}
	if o.bus, err = c.bus(); err != nil {
		t.Fatalf("reading the bus status: %v", err)
	}
	// The model path is relative to the trainer's out dir.
	o.weights, err = os.ReadFile(filepath.Join(c.dir, "models", filepath.FromSlash(final.ModelPath), "group1-shard1of1.bin"))
	if err != nil {
		t.Fatal(err)
	}
	o.rawDuplicates = countLogs(c.fetchers, "page was already in RAW")
	o.readyDuplicates = countLogs(c.preprocessors, "READY already holds this batch")

	// Every epoch saw each row of the table exactly once: the count and the key checksum
	// of the training and the validation rows equal SQL's.
	if len(final.Results) != epochs {
		t.Fatalf("%d epoch results, want %d", len(final.Results), epochs)
	}
	for i, e := range final.Results {
		if e.Epoch != i {
			t.Errorf("result %d is for epoch %d", i, e.Epoch)
		}
		if e.Seen != wantTrain {
			t.Errorf("epoch %d: the trainer saw training rows %+v, SQL says %+v", i+1, e.Seen, wantTrain)
		}
		if e.SeenValid != wantValid {
			t.Errorf("epoch %d: the trainer saw validation rows %+v, SQL says %+v", i+1, e.SeenValid, wantValid)
		}
		o.rowsChecked += e.Seen.Rows + e.SeenValid.Rows
	}
	// The leases never count a row twice, across hand-overs; once every range is recorded
	// done they count each row of each read pass. (The trainer can finish while a dead
	// fetcher's lease still waits to expire, when that fetcher had published the range's
	// last page but not yet reported it.)
	want := (wantTrain.Rows + wantValid.Rows) * int64(plan.Passes())
	allDone := final.Fetch.Done == plan.Passes()*len(plan.Ranges)
	if final.Fetch.RowsRead > want || (allDone && final.Fetch.RowsRead != want) {
		t.Errorf("the leases recorded %d rows read, want %d (%d passes; fetch %+v)", final.Fetch.RowsRead, want, plan.Passes(), final.Fetch)
	}
	// Nothing is left behind on the bus.
	if o.bus.Raw.Messages != 0 || o.bus.Preprocessors.AckPending != 0 {
		t.Errorf("RAW still holds %d pages (%d unacknowledged) after the job", o.bus.Raw.Messages, o.bus.Preprocessors.AckPending)
	}
	if ref != nil {
		// The weights are a pure function of (data, spec, seed): bit for bit those of the
		// clean run, and so are the losses on the way.
		o.weightsEqual = bytes.Equal(o.weights, ref.weights)
		if !o.weightsEqual {
			t.Errorf("the final weights differ from the clean run's (%d and %d bytes, first difference at byte %d)",
				len(o.weights), len(ref.weights), firstDiff(o.weights, ref.weights))
		}
		for i := range min(len(final.Results), len(ref.status.Results)) {
			if a, b := final.Results[i].Loss, ref.status.Results[i].Loss; a != b {
				t.Errorf("epoch %d loss %v, the clean run's %v", i+1, a, b)
			}
		}
		// RAW took each page once: a page published again (after a crash) was dropped by
		// its message id, so the stream accepted exactly as many messages as in the clean run.
		if sc.rawOnce && o.bus.Raw.LastSeq != ref.bus.Raw.LastSeq {
			t.Errorf("RAW accepted %d pages, the clean run %d: a page was published twice without being deduplicated",
				o.bus.Raw.LastSeq, ref.bus.Raw.LastSeq)
		}
	}
	if sc.check != nil {
		sc.check(t, r, o)
	}
	o.notes = append(o.notes, r.notes...)
	o.failover = r.failover
	t.Logf("%s: job %s done in %s; %d rows checked; RAW accepted %d pages, redeliveries %d; leases: %d granted, %d expired, %d released, %d resumed; RAW duplicates dropped %d, READY duplicates %d; %s",
		sc.name, final.ID, o.elapsed.Round(10*time.Millisecond), o.rowsChecked, o.bus.Raw.LastSeq, o.bus.Preprocessors.Redeliveries,
		final.Fetch.Grants, final.Fetch.Expired, final.Fetch.Released, final.Fetch.Resumed, o.rawDuplicates, o.readyDuplicates,
		strings.Join(o.notes, "; "))
	return o
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// printSummary writes the scenario table (markdown) to w and, when PGTRAIN_FAULTS_REPORT
// names a file, to that file.
func printSummary(w io.Writer) {
	summaryMu.Lock()
	defer summaryMu.Unlock()
	if len(summary) == 0 {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n| scenario | fault | later epochs | result | rows checked | RAW redeliveries | lease expired / released / resumed | RAW dups dropped | READY dups refused | time | notes |\n")
	fmt.Fprintf(&b, "|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, o := range slices.Clone(summary) {
		res := "ok"
		if o.failed {
			res = "FAIL"
		}
		var redeliveries uint64
		var expired, released, resumed int
		if o.bus != nil {
			redeliveries = o.bus.Preprocessors.Redeliveries
		}
		if o.status != nil {
			expired, released, resumed = o.status.Fetch.Expired, o.status.Fetch.Released, o.status.Fetch.Resumed
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %d | %d | %d / %d / %d | %d | %d | %.1fs | %s |\n",
			o.scenario, o.fault, o.mode, res, o.rowsChecked, redeliveries, expired, released, resumed,
			o.rawDuplicates, o.readyDuplicates, o.elapsed.Seconds(), strings.Join(o.notes, "; "))
	}
	var rb strings.Builder
	fmt.Fprintf(&rb, "\n| replicated bus scenario | result | leader failover | rows checked | weights equal the clean run's | time |\n|---|---|---|---|---|---|\n")
	replicated := 0
	for _, o := range summary {
		if o.natsNodes > 1 {
			replicated++
			res := "ok"
			if o.failed {
				res = "FAIL"
			}
			fmt.Fprintf(&rb, "| %s | %s | %s | %d | %v | %.1fs |\n", o.scenario, res, o.failover.Round(time.Millisecond), o.rowsChecked, o.weightsEqual, o.elapsed.Seconds())
		}
	}
	if replicated > 0 {
		b.WriteString(rb.String())
	}
	fmt.Fprint(w, b.String())
	if path := os.Getenv("PGTRAIN_FAULTS_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			fmt.Fprintf(w, "writing %s: %v\n", path, err)
		}
	}
}
