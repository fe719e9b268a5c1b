package scorer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"pgtrain/coordinator/client"
	"pgtrain/internal/bus"
	"pgtrain/internal/faultpoint"
	"pgtrain/internal/metrics"
	"pgtrain/internal/workloop"
	"pgtrain/messages"
	"pgtrain/model"
	"pgtrain/preprocessor/transform"
)

// ErrBadPlan reports a plan a scorer cannot run.
var ErrBadPlan = errors.New("invalid prediction plan")

// Coordinator is what a scorer asks of the coordinator; *client.Client implements it.
type Coordinator interface {
	ScorerJobs(ctx context.Context) ([]string, error)
	ReportScored(ctx context.Context, jobID string, rep messages.ScoreReport) error
	FailJob(ctx context.Context, jobID string, req messages.FailRequest) error
}

// Bus is the JetStream side of a scorer: the prediction jobs' pages in SCORE, the plans in the
// state bucket and the finished models. pgtrain's roles are given one that has declared them.
type Bus interface {
	JetStream() jetstream.JetStream
	StateKV() jetstream.KeyValue
	Names() messages.Names
	ModelFile(ctx context.Context, jobID, name string) ([]byte, error)
}

// Stats are the scorer's counters since it started.
type Stats struct {
	Batches      int64 // batches written and acknowledged
	Rows         int64 // rows in those batches
	Redeliveries int64 // batches delivered more than once
	Retries      int64 // writes or reports retried after an error
	Failed       int64 // batches that failed their job
}

type counters struct {
	batches, rows, redeliveries, retries, failed atomic.Int64
}

// Scorer writes the predictions of every running prediction job.
type Scorer struct {
	cfg   Config
	pools map[string]*pgxpool.Pool
	bus   Bus
	coord Coordinator
	names messages.Names
	m     metrics.Collectors
	log   *slog.Logger
	n     counters
}

// New returns a Scorer on the sources' pools ("" is the default source). cfg is completed
// with defaults and validated.
func New(cfg Config, pools map[string]*pgxpool.Pool, b Bus, coord Coordinator, log *slog.Logger) (*Scorer, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if b == nil || coord == nil || len(pools) == 0 {
		return nil, errors.New("scorer: a bus, a coordinator and at least one source pool are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Scorer{cfg: cfg, pools: pools, bus: b, coord: coord, names: b.Names(), log: log.With("scorer", cfg.ScorerID)}
	s.m = newMetrics(&s.n)
	return s, nil
}

// Stats returns the counters.
func (s *Scorer) Stats() Stats {
	return Stats{Batches: s.n.batches.Load(), Rows: s.n.rows.Load(), Redeliveries: s.n.redeliveries.Load(),
		Retries: s.n.retries.Load(), Failed: s.n.failed.Load()}
}

// Run scores until ctx is cancelled: it asks the coordinator for the running prediction
// jobs and consumes each one's batches. On cancel it stops pulling, finishes the batches in
// hand and returns nil. A coordinator that refuses the scorer's token stops it.
func (s *Scorer) Run(ctx context.Context) error {
	s.log.Info("scorer started", "concurrency", s.cfg.Concurrency)
	type running struct {
		cancel context.CancelFunc
		done   chan struct{}
	}
	jobs := map[string]*running{}
	defer func() {
		for _, r := range jobs {
			r.cancel()
			<-r.done
		}
	}()
	backoff := &workloop.Backoff{Min: s.cfg.RetryMin, Max: s.cfg.RetryMax}
	for ctx.Err() == nil {
		ids, err := s.coord.ScorerJobs(ctx)
		if client.Refused(err) {
			return fmt.Errorf("scorer: the coordinator refuses this scorer: %w", err)
		}
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("listing prediction jobs failed; retrying", "error", err, "retry_in", backoff.Next())
				backoff.Wait(ctx)
			}
			continue
		}
		backoff.Reset()
		listed := map[string]bool{}
		for _, id := range ids {
			listed[id] = true
			if r := jobs[id]; r != nil {
				select {
				case <-r.done: // it stopped (its consumer went away): start it again
				default:
					continue
				}
			}
			jctx, cancel := context.WithCancel(ctx)
			r := &running{cancel: cancel, done: make(chan struct{})}
			jobs[id] = r
			go func() {
				defer close(r.done)
				s.runJob(jctx, id)
			}()
		}
		for id, r := range jobs {
			if !listed[id] {
				r.cancel()
				<-r.done
				delete(jobs, id)
			}
		}
		workloop.Sleep(ctx, s.cfg.Poll)
	}
	s.log.Info("scorer stopped", "batches", s.n.batches.Load(), "rows", s.n.rows.Load())
	return nil
}

// jobRun is one prediction job as this scorer runs it.
type jobRun struct {
	plan *messages.Plan
	// writer is nil for an evaluation, which writes nothing.
	writer *OutputWriter
	out    outputs
	// modelJSON and shards load one model per worker (a model is not safe for concurrent
	// use, and loading from memory is cheap).
	modelJSON []byte
	shards    map[string][]byte
	// transform applies the model's preprocessing to the job's pages, as preprocessors do
	// for training jobs; it is safe for concurrent use.
	transform *transform.Transformer
}

// runJob consumes one job's batches until ctx is cancelled or the consumer goes away.
func (s *Scorer) runJob(ctx context.Context, id string) {
	log := s.log.With("job_id", id)
	backoff := &workloop.Backoff{Min: s.cfg.RetryMin, Max: s.cfg.RetryMax}
	var jr *jobRun
	created := false
	for ctx.Err() == nil {
		var err error
		if jr == nil {
			jr, err = s.prepare(ctx, id)
			var perm permanentError
			if errors.As(err, &perm) {
				log.Error("failing the job: it cannot be scored", "error", err)
				s.failJob(ctx, id, nil, err.Error())
				return
			}
		}
		var cons jetstream.Consumer
		switch {
		case err != nil:
		case !created:
			if cons, err = s.consumer(ctx, id); err == nil {
				created = true
			}
		default:
			// Only bind from now on: the coordinator deletes the consumer when the job
			// ends, and creating it again would leave it behind.
			cons, err = s.bus.JetStream().Consumer(ctx, s.names.ScoreStream(), messages.ScorerDurable(id))
			if errors.Is(err, jetstream.ErrConsumerNotFound) {
				log.Info("the job's consumer is gone (the job ended); stopping")
				return
			}
		}
		if err == nil {
			err = s.consume(ctx, log, jr, cons)
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("scoring stopped; starting again", "error", err, "retry_in", backoff.Next())
			backoff.Wait(ctx)
			continue
		}
		backoff.Reset()
	}
}

// permanentError is a job no retry can score.
type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

// prepare reads the job's plan and model and checks they go together.
func (s *Scorer) prepare(ctx context.Context, id string) (*jobRun, error) {
	plan, err := bus.GetPlan(ctx, s.bus.StateKV(), id)
	if errors.Is(err, bus.ErrBadPlan) {
		return nil, permanentError{err}
	}
	if err != nil {
		return nil, err
	}
	if plan.Kind != messages.JobKindPrediction || plan.Prediction == nil {
		return nil, permanentError{fmt.Errorf("job %s is not a prediction job: %w", id, ErrBadPlan)}
	}
	pool := s.pools[plan.Spec.Source]
	if pool == nil {
		return nil, permanentError{fmt.Errorf("job %s reads source %q, which this scorer has no connection to: %w", id, plan.Spec.Source, ErrBadPlan)}
	}
	jr := &jobRun{plan: plan, out: newOutputs(plan.Prediction), shards: map[string][]byte{}}
	if jr.transform, err = transform.Compile(plan); err != nil {
		return nil, permanentError{fmt.Errorf("job %s: %w", id, err)}
	}
	if plan.Prediction.OutputTable != "" {
		if jr.writer, err = NewOutputWriter(pool, plan); err != nil {
			return nil, permanentError{err}
		}
	}
	modelID := plan.Prediction.Model
	if jr.modelJSON, err = s.bus.ModelFile(ctx, modelID, bus.ModelJSON); err != nil {
		if errors.Is(err, bus.ErrNoModel) {
			return nil, permanentError{err}
		}
		return nil, err
	}
	m, err := s.loadModel(ctx, jr, modelID)
	if err != nil {
		return nil, err
	}
	if m.InputDim() != plan.InputDim || jr.transform.InputDim() != plan.InputDim {
		return nil, permanentError{fmt.Errorf("model %s takes %d inputs, the plan has %d (its transform %d): %w", modelID, m.InputDim(), plan.InputDim, jr.transform.InputDim(), ErrBadPlan)}
	}
	if err := jr.out.check(m.OutputDim()); err != nil {
		return nil, permanentError{fmt.Errorf("model %s: %w", modelID, err)}
	}
	return jr, nil
}

// loadModel builds a model from the job's files, fetching each weight shard once. It is
// compiled with the training spec's loss and metrics when the job evaluates.
func (s *Scorer) loadModel(ctx context.Context, jr *jobRun, modelID string) (*model.Sequential, error) {
	var fetchErr error
	m, err := model.LoadTFJSFromMemory(jr.modelJSON, func(path string) ([]byte, error) {
		if b, ok := jr.shards[path]; ok {
			return b, nil
		}
		b, err := s.bus.ModelFile(ctx, modelID, path)
		if err != nil {
			fetchErr = err
			return nil, err
		}
		jr.shards[path] = b
		return b, nil
	})
	if fetchErr != nil && !errors.Is(fetchErr, bus.ErrNoModel) {
		return nil, fetchErr
	}
	if err != nil {
		return nil, permanentError{fmt.Errorf("loading model %s: %w", modelID, err)}
	}
	if jr.plan.Prediction.Evaluate {
		if err := m.Compile(model.CompileOf(jr.plan.Spec)); err != nil {
			return nil, permanentError{fmt.Errorf("compiling model %s for evaluation: %w", modelID, err)}
		}
	}
	return m, nil
}

// consumer binds to the job's shared durable consumer on SCORE, creating it when this is
// the first scorer. An abandoned consumer (the coordinator deletes it when the job ends)
// goes away by itself after an hour without scorers.
func (s *Scorer) consumer(ctx context.Context, id string) (jetstream.Consumer, error) {
	return s.bus.JetStream().CreateOrUpdateConsumer(ctx, s.names.ScoreStream(), jetstream.ConsumerConfig{
		Durable:           messages.ScorerDurable(id),
		FilterSubject:     s.names.ScoreJobSubjects(id),
		AckPolicy:         jetstream.AckExplicitPolicy,
		AckWait:           s.cfg.AckWait,
		MaxAckPending:     s.cfg.MaxAckPending,
		InactiveThreshold: time.Hour,
	})
}

// consume runs the workers on one message iterator until it closes.
func (s *Scorer) consume(ctx context.Context, log *slog.Logger, jr *jobRun, cons jetstream.Consumer) error {
	it, err := cons.Messages(jetstream.PullMaxMessages(2 * s.cfg.Concurrency))
	if err != nil {
		return err
	}
	stopDrain := context.AfterFunc(ctx, it.Drain)
	defer stopDrain()
	var wg sync.WaitGroup
	var firstErr error
	var once sync.Once
	for range s.cfg.Concurrency {
		wg.Go(func() {
			m, err := s.loadModel(ctx, jr, jr.plan.Prediction.Model)
			if err != nil {
				once.Do(func() { firstErr = err })
				it.Stop()
				return
			}
			// One batch per worker, its buffers reused from page to page.
			b := &messages.ReadyBatch{}
			for {
				msg, err := it.Next()
				if err != nil {
					if !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
						once.Do(func() { firstErr = err })
					}
					it.Stop()
					return
				}
				if ctx.Err() != nil {
					_ = msg.Nak()
					continue
				}
				s.handle(ctx, log, jr, m, b, msg)
			}
		})
	}
	wg.Wait()
	return firstErr
}

// handle transforms one page into batch b, writes its predictions, reports it and
// acknowledges it, which takes it off SCORE. A page that cannot be written now is handed back
// for a later delivery.
func (s *Scorer) handle(ctx context.Context, log *slog.Logger, jr *jobRun, m *model.Sequential, b *messages.ReadyBatch, msg jetstream.Msg) {
	work, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout+s.cfg.ReportTimeout)
	defer cancel()
	md, err := msg.Metadata()
	if err == nil && md.NumDelivered > 1 {
		s.n.redeliveries.Add(1)
		log.Info("page delivered again: an earlier delivery was not acknowledged", "subject", msg.Subject(), "delivery", md.NumDelivered)
	}
	stop := keepAlive(msg, s.cfg.AckWait/3)
	defer stop()
	raw, err := messages.DecodeRaw(msg.Data())
	if err == nil && raw.JobID != jr.plan.JobID {
		err = fmt.Errorf("page %s is not of job %s", raw.BatchID, jr.plan.JobID)
	}
	if err != nil {
		s.n.failed.Add(1)
		log.Error("failing the job: a page cannot be decoded", "subject", msg.Subject(), "error", err)
		s.failJob(work, jr.plan.JobID, nil, fmt.Sprintf("page %s: %v", msg.Subject(), err))
		_ = msg.Term()
		return
	}
	log = log.With("batch", raw.BatchID.String())
	// The model's preprocessing, with the code that preprocessed its training data.
	if err := jr.transform.ApplyInto(raw, b); err != nil {
		s.n.failed.Add(1)
		log.Error("failing the job: a page cannot be transformed", "error", err)
		s.failJob(work, jr.plan.JobID, &raw.BatchID, err.Error())
		_ = msg.Term()
		return
	}
	rep, rows, err := s.score(jr, m, b)
	if err != nil {
		s.n.failed.Add(1)
		log.Error("failing the job: a batch cannot be scored", "error", err)
		s.failJob(work, jr.plan.JobID, &b.BatchID, err.Error())
		_ = msg.Term()
		return
	}
	if err := jr.write(work, b.BatchID, rows); err != nil {
		if permanentWriteError(err) {
			s.n.failed.Add(1)
			log.Error("failing the job: the output table refuses the batch", "error", err)
			s.failJob(work, jr.plan.JobID, &b.BatchID, "writing the output table: "+err.Error())
			_ = msg.Term()
			return
		}
		s.n.retries.Add(1)
		log.Warn("writing a batch failed; handing it back", "error", err)
		_ = msg.NakWithDelay(s.cfg.RetryMax)
		return
	}
	faultpoint.Hit(faultpoint.ScorerAfterWrite)
	rctx, rcancel := context.WithTimeout(work, s.cfg.ReportTimeout)
	err = s.coord.ReportScored(rctx, jr.plan.JobID, rep)
	rcancel()
	switch {
	case errors.Is(err, client.ErrLeaseLost), errors.Is(err, client.ErrNotFound):
		log.Info("the job ended; dropping its batch", "error", err)
	case err != nil:
		s.n.retries.Add(1)
		log.Warn("reporting a written batch failed; handing it back (writing it again is harmless)", "error", err)
		_ = msg.NakWithDelay(s.cfg.RetryMin)
		return
	}
	// The batch is written and counted: the acknowledgement takes its page off SCORE (a work
	// queue). A lost one only brings the page back, and writing it again is harmless.
	if err := msg.DoubleAck(work); err != nil {
		log.Debug("acknowledging a written batch", "error", err)
	}
	s.n.batches.Add(1)
	s.n.rows.Add(int64(b.Rows()))
}

// write stores a batch's output rows, when the job has an output table.
func (jr *jobRun) write(ctx context.Context, b messages.BatchID, rows [][]any) error {
	if jr.writer == nil {
		return nil
	}
	return jr.writer.Write(ctx, b, rows)
}

// score runs the forward pass on a batch and returns its report and output rows (none for
// an evaluation).
func (s *Scorer) score(jr *jobRun, m *model.Sequential, b *messages.ReadyBatch) (messages.ScoreReport, [][]any, error) {
	rep := messages.ScoreReport{Version: messages.SchemaVersion, ScorerID: s.cfg.ScorerID, Batch: b.BatchID, Last: b.Last}
	for _, k := range b.Keys {
		rep.Keys.Add(k)
	}
	var rows [][]any
	if jr.writer != nil && b.Rows() > 0 {
		rows = make([][]any, b.Rows())
		pred, err := m.Predict(b.X, b.Rows())
		if err != nil {
			return rep, nil, fmt.Errorf("batch %s: %w", b.BatchID, err)
		}
		keys, err := batchKeys(jr.plan, b)
		if err != nil {
			return rep, nil, err
		}
		w := m.OutputDim()
		for r := range b.Keys {
			rows[r] = append(keys(r), jr.out.row(pred[r*w:(r+1)*w])...)
		}
	}
	if jr.plan.Prediction.Evaluate && b.Rows() > 0 {
		res, err := m.Evaluate(b.X, b.Y, b.Rows())
		if err != nil {
			return rep, nil, fmt.Errorf("batch %s: evaluating: %w", b.BatchID, err)
		}
		loss := res["loss"]
		rep.Loss = &loss
		rep.Metrics = map[string]float64{}
		for k, v := range res {
			if k != "loss" {
				rep.Metrics[k] = v
			}
		}
	} else if jr.plan.Prediction.Evaluate {
		zero := 0.0
		rep.Loss = &zero
	}
	return rep, rows, nil
}

// batchKeys returns the output key values of the batch's row r: the integer key, or a
// typed key's text columns (which the output writer casts to the key's types).
func batchKeys(plan *messages.Plan, b *messages.ReadyBatch) (func(r int) []any, error) {
	if plan.KeyColumns == nil {
		return func(r int) []any { return []any{b.Keys[r]} }, nil
	}
	if len(b.KeyText) != len(plan.KeyColumns) {
		return nil, fmt.Errorf("batch %s carries %d key text columns, the plan's key has %d", b.BatchID, len(b.KeyText), len(plan.KeyColumns))
	}
	for _, t := range b.KeyText {
		if len(t) != b.Rows() {
			return nil, fmt.Errorf("batch %s carries %d key values for %d rows", b.BatchID, len(t), b.Rows())
		}
	}
	return func(r int) []any {
		out := make([]any, len(b.KeyText), len(b.KeyText)+3)
		for i, t := range b.KeyText {
			out[i] = t[r]
		}
		return out
	}, nil
}

// failJob ends the job for a permanent error, naming the batch when there is one.
func (s *Scorer) failJob(ctx context.Context, jobID string, batch *messages.BatchID, reason string) {
	req := messages.FailRequest{Error: "scorer: " + reason, Batch: batch}
	if batch == nil {
		// Before any batch: the job's first page names it (any read page does).
		req.Batch = &messages.BatchID{JobID: jobID}
	}
	if err := s.coord.FailJob(ctx, jobID, req); err != nil {
		s.log.Warn("failing the job", "job_id", jobID, "error", err)
	}
}

// keepAlive marks a message in progress periodically until stop is called, so that a batch
// being written is not delivered to another scorer meanwhile.
func keepAlive(msg jetstream.Msg, every time.Duration) (stop func()) {
	t := time.NewTicker(max(every, 100*time.Millisecond))
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-t.C:
				_ = msg.InProgress()
			case <-done:
				return
			}
		}
	}()
	return func() { t.Stop(); close(done) }
}
