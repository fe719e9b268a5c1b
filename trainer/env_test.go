package trainer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"pgtrain/internal/bus"
	"pgtrain/internal/testenv"
	"pgtrain/messages"
)

// testBus connects to a fresh embedded JetStream server with pgtrain's streams declared.
func testBus(t testing.TB) *bus.Bus {
	t.Helper()
	url := testenv.NATS(t)
	nc, err := bus.Connect(url, t.Name(), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := bus.Ensure(ctx, nc, bus.Limits{ReadyMaxBytes: 256 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testLog(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.DiscardHandler)
}

// dataset describes a synthetic table: keys 7, 10, 13, ... (gaps, as a real key column
// has), split into ranges of uneven sizes so that batches straddle range boundaries.
type dataset struct {
	job        string
	rangeRows  []int // rows per range, in key order
	validation int   // how many of the last ranges validate
	pageRows   int
	epochs     int
	batch      int
	seed       int64
	replay     bool
	backend    string
	model      json.RawMessage
	loss       string
	// controls sets the spec's training controls (callbacks).
	controls func(s *messages.JobSpec)
}

const (
	testInputDim = 3
	testLabelDim = 1
)

// testModel is small but has what makes resuming hard: several layers, Adam's moments and
// a dropout layer whose masks come from the model's random state.
var testModel = json.RawMessage(`{"layers": [
	{"type": "dense", "units": 8, "activation": "tanh"},
	{"type": "dropout", "rate": 0.2},
	{"type": "dense", "units": 1}]}`)

func keyOf(i int) int64 { return 7 + 3*int64(i) }

// row is the example stored under a key: three features and y = 2x0 - x1 + 0.5x2 + 0.3.
func row(key int64) (x [testInputDim]float32, y float32) {
	k := float64(key)
	x[0] = float32(math.Sin(k * 0.37))
	x[1] = float32(math.Cos(k * 0.11))
	x[2] = float32(math.Mod(k, 17)/17 - 0.5)
	y = 2*x[0] - x[1] + 0.5*x[2] + 0.3
	return x, y
}

// plan builds the plan the coordinator would store, with the exact expected checksums.
func (d dataset) plan() *messages.Plan {
	if d.model == nil {
		d.model = testModel
	}
	if d.loss == "" {
		d.loss = "mse"
	}
	spec := messages.JobSpec{
		Table: "t", Key: messages.KeyColumns{"id"}, Features: []messages.FeatureSpec{{Column: "a"}, {Column: "b"}, {Column: "c"}},
		Label: messages.LabelSpec{Column: "y"}, Model: d.model, Loss: d.loss, Metrics: []string{"mae"},
		Epochs: d.epochs, BatchSize: d.batch, Seed: d.seed, Backend: d.backend,
		Optimizer: messages.OptimizerSpec{Name: "adam", LearningRate: 0.01},
	}
	if d.controls != nil {
		d.controls(&spec)
	}
	spec = spec.WithDefaults()
	p := &messages.Plan{
		Version: messages.SchemaVersion, JobID: d.job, Spec: spec, Schema: "public", Table: "t", Key: "id",
		Features: []messages.ColumnPlan{
			{Name: "a", PGType: "real", Kind: messages.KindNumeric, Factor: 1},
			{Name: "b", PGType: "real", Kind: messages.KindNumeric, Factor: 1},
			{Name: "c", PGType: "real", Kind: messages.KindNumeric, Factor: 1},
		},
		Label:    messages.ColumnPlan{Name: "y", PGType: "real", Kind: messages.KindNumeric, Factor: 1},
		InputDim: testInputDim, LabelDim: testLabelDim, ValidationRanges: d.validation,
		PageRows: d.pageRows, Replay: d.replay, Window: 4,
	}
	i := 0
	for r, n := range d.rangeRows {
		kr := messages.KeyRange{Index: r, Lo: keyOf(i), Hi: keyOf(i+n) - 1, Rows: int64(n)}
		if r == 0 {
			kr.Lo = math.MinInt64
		}
		if r == len(d.rangeRows)-1 {
			kr.Hi = math.MaxInt64
		}
		p.Ranges = append(p.Ranges, kr)
		for j := 0; j < n; j++ {
			if r < len(d.rangeRows)-d.validation {
				p.Expected.Add(keyOf(i + j))
			} else {
				p.ExpectedValid.Add(keyOf(i + j))
			}
		}
		i += n
	}
	return p
}

// batches returns every READY batch of every read pass, as the preprocessors would publish.
func (d dataset) batches(p *messages.Plan) []*messages.ReadyBatch {
	var out []*messages.ReadyBatch
	for pass := 0; pass < p.Passes(); pass++ {
		first := 0
		for r, n := range d.rangeRows {
			page := 0
			for start := 0; ; start += d.pageRows {
				end := min(start+d.pageRows, n)
				b := &messages.ReadyBatch{
					BatchID:  messages.BatchID{JobID: d.job, Pass: pass, Range: r, Page: page},
					InputDim: testInputDim, LabelDim: testLabelDim, Last: end >= n,
				}
				for i := start; i < end; i++ {
					k := keyOf(first + i)
					x, y := row(k)
					b.Keys = append(b.Keys, k)
					b.X = append(b.X, x[:]...)
					b.Y = append(b.Y, y)
				}
				out = append(out, b)
				page++
				if end >= n {
					break
				}
			}
			first += n
		}
	}
	return out
}

func publish(ctx context.Context, b *bus.Bus, rb *messages.ReadyBatch) error {
	data, err := messages.EncodeReady(rb)
	if err != nil {
		return err
	}
	if _, err := b.JS.Publish(ctx, b.Names().ReadySubject(rb.BatchID), data); err != nil && !bus.IsDuplicateSubject(err) {
		return fmt.Errorf("publishing %s: %w", rb.BatchID, err)
	}
	return nil
}

// publishShuffled publishes the batches in an order drawn from shuffleSeed: about half at
// once, the rest from a goroutine with small pauses in between, so the trainer meets
// missing pages and must wait for them. It returns a function that waits for the
// goroutine and reports its error.
func publishShuffled(t *testing.T, b *bus.Bus, all []*messages.ReadyBatch, shuffleSeed uint64) func() error {
	t.Helper()
	ctx := context.Background()
	order := rand.New(rand.NewPCG(shuffleSeed, 99)).Perm(len(all))
	now, later := order[:len(order)/2], order[len(order)/2:]
	for _, i := range now {
		if err := publish(ctx, b, all[i]); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	var perr error
	wg.Go(func() {
		for n, i := range later {
			if n%4 == 0 {
				// A gap that the trainer must wait out, not a synchronisation.
				time.Sleep(3 * time.Millisecond)
			}
			if err := publish(ctx, b, all[i]); err != nil {
				perr = err
				return
			}
		}
	})
	return func() error { wg.Wait(); return perr }
}

// testCoordinator is the trainer's side of the coordinator API over an in-memory job list:
// the coordinator package is not part of these tests' scope.
type testCoordinator struct {
	mu       sync.Mutex
	queue    []string
	claimed  map[string]string // trainer id → job
	reports  []messages.TrainerProgress
	failed   map[string]string
	done     map[string]string // job → model path
	claimErr error
	// reportErr, when set, is the answer to every progress report.
	reportErr error
}

func newTestCoordinator(jobs ...string) *testCoordinator {
	return &testCoordinator{queue: jobs, claimed: map[string]string{}, failed: map[string]string{}, done: map[string]string{}}
}

func (c *testCoordinator) Claim(_ context.Context, trainerID string) (messages.ClaimResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.claimErr != nil {
		return messages.ClaimResponse{}, c.claimErr
	}
	if j, ok := c.claimed[trainerID]; ok {
		if _, done := c.done[j]; !done {
			if _, failed := c.failed[j]; !failed {
				return messages.ClaimResponse{JobID: j}, nil
			}
		}
	}
	if len(c.queue) == 0 {
		return messages.ClaimResponse{}, nil
	}
	j := c.queue[0]
	c.queue = c.queue[1:]
	c.claimed[trainerID] = j
	return messages.ClaimResponse{JobID: j}, nil
}

func (c *testCoordinator) ReportTrainer(_ context.Context, jobID string, p messages.TrainerProgress) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reportErr != nil {
		return c.reportErr
	}
	if _, failed := c.failed[jobID]; failed {
		return errors.New("job failed")
	}
	c.reports = append(c.reports, p)
	if p.Done {
		c.done[jobID] = messages.ModelDir(jobID) // as the coordinator records it
	}
	return nil
}

func (c *testCoordinator) FailJob(_ context.Context, jobID string, req messages.FailRequest) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failed[jobID] = req.Error
	return nil
}

func (c *testCoordinator) snapshot() (reports []messages.TrainerProgress, failed, done map[string]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	failed, done = map[string]string{}, map[string]string{}
	for k, v := range c.failed {
		failed[k] = v
	}
	for k, v := range c.done {
		done[k] = v
	}
	return append([]messages.TrainerProgress(nil), c.reports...), failed, done
}
