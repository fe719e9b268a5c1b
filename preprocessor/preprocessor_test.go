package preprocessor

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"pgtrain/internal/bus"
	"pgtrain/internal/testenv"
	"pgtrain/messages"
	"pgtrain/preprocessor/transform"
)

// failures records FailJob calls, the way the coordinator's endpoint receives them.
type failures struct {
	mu      sync.Mutex
	reasons map[string][]string
}

func (f *failures) FailJob(ctx context.Context, jobID string, req messages.FailRequest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.reasons == nil {
		f.reasons = map[string][]string{}
	}
	if req.Batch == nil || req.Batch.JobID != jobID {
		return fmt.Errorf("failing job %s: the request names page %v, not one of the job's", jobID, req.Batch)
	}
	f.reasons[jobID] = append(f.reasons[jobID], req.Error)
	return nil
}

func (f *failures) of(jobID string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.reasons[jobID]...)
}

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func testBus(t testing.TB, limits bus.Limits) *bus.Bus {
	t.Helper()
	nc, err := bus.Connect(testenv.NATS(t), "preprocessor-test", testLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	b, err := bus.Ensure(context.Background(), nc, limits)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testPlan: two numeric features (one imputed), a categorical one, a numeric label.
func testPlan(jobID string) *messages.Plan {
	return &messages.Plan{
		JobID: jobID,
		Features: []messages.ColumnPlan{
			{Name: "a", Kind: messages.KindNumeric, HasImpute: true, Impute: 1, Offset: 2, Factor: 0.5},
			{Name: "b", Kind: messages.KindNumeric, Offset: 0, Factor: 1},
			{Name: "c", Kind: messages.KindCategorical, Vocabulary: []string{"x", "y"}},
		},
		InputDim: 5,
		Label:    messages.ColumnPlan{Name: "label", Kind: messages.KindNumeric},
		LabelDim: 1,
		PageRows: 100,
	}
}

// rawBatch makes page `page` of range `rng` with rows rows (keys rng*1000+page*100+i).
func rawBatch(jobID string, rng, page, rows int, last bool) *messages.RawBatch {
	b := &messages.RawBatch{BatchID: messages.BatchID{JobID: jobID, Range: rng, Page: page}, Last: last}
	a := messages.RawColumn{Name: "a", Kind: messages.ColumnFloat64}
	bc := messages.RawColumn{Name: "b", Kind: messages.ColumnFloat64}
	c := messages.RawColumn{Name: "c", Kind: messages.ColumnText}
	l := messages.RawColumn{Name: "label", Kind: messages.ColumnFloat64}
	for i := 0; i < rows; i++ {
		k := int64(rng*1000 + page*100 + i)
		b.Keys = append(b.Keys, k)
		a.Float64 = append(a.Float64, float64(k%13))
		if i%5 == 0 {
			a.SetNull(i)
			a.Float64[i] = 0
		}
		bc.Float64 = append(bc.Float64, float64(k)/7)
		c.Text = append(c.Text, []string{"x", "y", "z"}[i%3])
		l.Float64 = append(l.Float64, float64(k%2))
	}
	b.Columns = []messages.RawColumn{a, bc, c, l}
	return b
}

func publishRaw(t testing.TB, b *bus.Bus, rb *messages.RawBatch, msgID string) {
	t.Helper()
	data, err := messages.EncodeRaw(rb)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := b.JS.Publish(context.Background(), b.Names().RawSubject(rb.BatchID), data, jetstream.WithMsgID(msgID))
	if err != nil {
		t.Fatal(err)
	}
	if ack.Duplicate {
		t.Fatalf("raw %s deduplicated", msgID)
	}
}

func streamMsgs(t testing.TB, s jetstream.Stream) uint64 {
	t.Helper()
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func start(t testing.TB, cfg Config, b *bus.Bus, f JobFailer) (*Preprocessor, context.CancelFunc, chan error) {
	t.Helper()
	p, err := New(cfg, b, f, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return p, cancel, done
}

func stop(t testing.TB, cancel context.CancelFunc, done chan error) {
	t.Helper()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v, want nil on shutdown", err)
		}
		done <- nil
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// Every RAW page becomes exactly one READY batch, whatever the duplicates: a page published
// twice (past the dedup window: another message id), a page whose READY batch was already
// stored before a crash, and a page delivered a second time after a nak.
func TestPreprocessorEndToEnd(t *testing.T) {
	b := testBus(t, bus.Limits{})
	ctx := context.Background()
	plan := testPlan("job-e2e")
	if err := bus.PutPlan(ctx, b.State, plan); err != nil {
		t.Fatal(err)
	}
	var batches []*messages.RawBatch
	for r := 0; r < 3; r++ {
		for p := 0; p < 4; p++ {
			batches = append(batches, rawBatch(plan.JobID, r, p, 50+p, p == 3))
		}
	}
	batches = append(batches, rawBatch(plan.JobID, 3, 0, 0, true)) // an empty range
	for _, rb := range batches {
		publishRaw(t, b, rb, rb.MsgID())
	}
	publishRaw(t, b, batches[5], batches[5].MsgID()+"-again")

	// Batch 7's READY batch is already there: the page was processed, but not acked.
	want7, err := transform.Apply(plan, batches[7])
	if err != nil {
		t.Fatal(err)
	}
	data7, _ := messages.EncodeReady(want7)
	if _, err := b.JS.Publish(ctx, b.Names().ReadySubject(want7.BatchID), data7); err != nil {
		t.Fatal(err)
	}

	// A delivery that is naked before the preprocessors start comes back as a redelivery.
	cons, err := b.Raw.Consumer(ctx, messages.PreprocDurable)
	if err != nil {
		t.Fatal(err)
	}
	got, err := cons.Fetch(1)
	if err != nil {
		t.Fatal(err)
	}
	for m := range got.Messages() {
		if err := m.Nak(); err != nil {
			t.Fatal(err)
		}
	}

	f := &failures{}
	p1, cancel1, done1 := start(t, Config{}, b, f)
	p2, cancel2, done2 := start(t, Config{Concurrency: 1}, b, f)
	testenv.Eventually(t, 20*time.Second, "RAW empty", func() bool { return streamMsgs(t, b.Raw) == 0 })
	stop(t, cancel1, done1)
	stop(t, cancel2, done2)

	if n := streamMsgs(t, b.Ready); n != uint64(len(batches)) {
		t.Fatalf("READY holds %d messages, want %d", n, len(batches))
	}
	for _, rb := range batches {
		m, err := b.Ready.GetLastMsgForSubject(ctx, b.Names().ReadySubject(rb.BatchID))
		if err != nil {
			t.Fatalf("batch %s: %v", rb.BatchID, err)
		}
		want, err := transform.Apply(plan, rb)
		if err != nil {
			t.Fatal(err)
		}
		wantData, _ := messages.EncodeReady(want)
		if !bytes.Equal(m.Data, wantData) {
			t.Fatalf("READY batch %s differs from the transform of its page", rb.BatchID)
		}
	}
	s1, s2 := p1.Stats(), p2.Stats()
	sum := Stats{Processed: s1.Processed + s2.Processed, Duplicates: s1.Duplicates + s2.Duplicates,
		Redeliveries: s1.Redeliveries + s2.Redeliveries, Failed: s1.Failed + s2.Failed, Terminated: s1.Terminated + s2.Terminated}
	if sum.Processed != int64(len(batches))+1 || sum.Duplicates != 2 || sum.Redeliveries != 1 || sum.Failed != 0 || sum.Terminated != 0 {
		t.Fatalf("stats %+v + %+v: want %d processed, 2 duplicates, 1 redelivery, no failures", s1, s2, len(batches)+1)
	}
	if r := f.of(plan.JobID); len(r) != 0 {
		t.Fatalf("job failed: %v", r)
	}
}

// When READY is full the pages wait in RAW (held, not naked: no redeliveries) and flow again
// once the trainer makes room; a preprocessor stopped meanwhile hands its page back.
func TestPreprocessorBackpressure(t *testing.T) {
	// Each READY batch of 200 rows is ~ 200×(8+20+4) = 6.4 kB: 32 kB holds four.
	b := testBus(t, bus.Limits{ReadyMaxBytes: 32 << 10})
	ctx := context.Background()
	plan := testPlan("job-bp")
	if err := bus.PutPlan(ctx, b.State, plan); err != nil {
		t.Fatal(err)
	}
	const n = 16
	for p := 0; p < n; p++ {
		rb := rawBatch(plan.JobID, 0, p, 200, p == n-1)
		publishRaw(t, b, rb, rb.MsgID())
	}
	f := &failures{}
	cfg := Config{RetryMax: 100 * time.Millisecond, InProgressEvery: 200 * time.Millisecond}
	p1, cancel1, done1 := start(t, cfg, b, f)
	testenv.Eventually(t, 20*time.Second, "READY full and a page held", func() bool {
		return p1.Stats().Backpressure > 0 && streamMsgs(t, b.Ready) > 0
	})
	held := streamMsgs(t, b.Ready)
	if raw := streamMsgs(t, b.Raw); raw+held != n {
		t.Fatalf("RAW %d + READY %d != %d pages: something was lost", raw, held, n)
	}
	// Stopped while waiting, it returns and the page goes back to RAW.
	stop(t, cancel1, done1)
	if raw := streamMsgs(t, b.Raw); raw+held != n {
		t.Fatalf("after shutdown RAW %d + READY %d != %d pages", raw, held, n)
	}
	seen := map[string]bool{}
	// collect records the batches in READY and returns the sequence after the last of them.
	collect := func() uint64 {
		info, err := b.Ready.Info(ctx, jetstream.WithSubjectFilter(b.Names().ReadySubjects()))
		if err != nil {
			t.Fatal(err)
		}
		for subj := range info.State.Subjects {
			seen[subj] = true
		}
		return info.State.LastSeq + 1
	}
	collect()
	p2, cancel2, done2 := start(t, cfg, b, f)
	// The trainer consumes: purge READY whenever it is full, until RAW is empty. Only what
	// collect saw is purged: a batch published in between must not vanish unseen.
	testenv.Eventually(t, 30*time.Second, "every page through READY", func() bool {
		if err := b.Ready.Purge(ctx, jetstream.WithPurgeSequence(collect())); err != nil {
			t.Fatal(err)
		}
		return streamMsgs(t, b.Raw) == 0
	})
	stop(t, cancel2, done2)
	collect()
	if len(seen) != n {
		t.Fatalf("%d distinct batches reached READY, want %d", len(seen), n)
	}
	if s := p2.Stats(); s.Backpressure == 0 || s.Failed != 0 {
		t.Fatalf("second preprocessor stats %+v: want some backpressure and no failures", s)
	}
	if s1 := p1.Stats(); s1.Redeliveries != 0 {
		t.Fatalf("first preprocessor saw %d redeliveries, want 0 (pages are held, not naked)", s1.Redeliveries)
	}
}

// Permanent problems end the job with a reason and terminate the page; a job whose plan is
// not there yet is waited for.
func TestPreprocessorFailures(t *testing.T) {
	b := testBus(t, bus.Limits{})
	ctx := context.Background()
	good := testPlan("job-good")
	if err := bus.PutPlan(ctx, b.State, good); err != nil {
		t.Fatal(err)
	}
	f := &failures{}
	p, cancel, done := start(t, Config{NoPlanDelay: 100 * time.Millisecond}, b, f)

	bad := rawBatch("job-good", 0, 0, 10, true)
	bad.Columns[1].SetNull(4) // b has no imputation
	publishRaw(t, b, bad, bad.MsgID())

	wrong := rawBatch("job-good", 1, 0, 10, true)
	wrong.Columns[2].Kind, wrong.Columns[2].Float64, wrong.Columns[2].Text = messages.ColumnFloat64, make([]float64, 10), nil
	publishRaw(t, b, wrong, wrong.MsgID())

	future := []byte{0x97, 0x63} // a fixarray whose version field is 99
	if _, err := b.JS.Publish(ctx, "pgtrain.raw.job-v2.0.0.0", future); err != nil {
		t.Fatal(err)
	}

	late := rawBatch("job-late", 0, 0, 5, true)
	publishRaw(t, b, late, late.MsgID())

	testenv.Eventually(t, 20*time.Second, "failures reported", func() bool {
		return len(f.of("job-good")) == 2 && len(f.of("job-v2")) == 1
	})
	reasons := strings.Join(f.of("job-good"), "\n")
	for _, want := range []string{
		fmt.Sprintf(`row key %d: column "b" is NULL and has no imputation`, bad.Keys[4]),
		`column "c" has raw kind float64, the plan wants text`,
	} {
		if !strings.Contains(reasons, want) {
			t.Fatalf("reasons %q, want one containing %q", reasons, want)
		}
	}
	if r := f.of("job-v2")[0]; !strings.Contains(r, "pgtrain.raw.job-v2.0.0.0") || !strings.Contains(r, "version 99") {
		t.Fatalf("reason %q, want it to name the subject and the version", r)
	}
	testenv.Eventually(t, 10*time.Second, "a page of an unplanned job put back", func() bool { return p.Stats().NoPlan >= 2 })
	if err := bus.PutPlan(ctx, b.State, testPlan("job-late")); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, "RAW empty", func() bool { return streamMsgs(t, b.Raw) == 0 })
	stop(t, cancel, done)
	if n := streamMsgs(t, b.Ready); n != 1 {
		t.Fatalf("READY holds %d batches, want only the late job's", n)
	}
	if _, err := b.Ready.GetLastMsgForSubject(ctx, b.Names().ReadySubject(late.BatchID)); err != nil {
		t.Fatal(err)
	}
	if s := p.Stats(); s.Failed != 2 || s.Terminated != 1 || s.Processed != 1 || s.Redeliveries < 2 {
		t.Fatalf("stats %+v: want 2 failed, 1 terminated, 1 processed after redeliveries", s)
	}
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"defaults", Config{}, ""},
		{"concurrency", Config{Concurrency: -1}, "concurrency"},
		{"timeout", Config{PublishTimeout: -time.Second}, "publish_timeout"},
		{"retry bounds", Config{RetryMin: time.Second, RetryMax: time.Millisecond}, "retry_max"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.cfg.WithDefaults()
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil || c.Concurrency != DefaultConcurrency || c.Prefetch != 2*DefaultConcurrency {
					t.Fatalf("defaults: %+v, %v", c, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
