package preprocessor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"pgtrain/internal/bus"
	"pgtrain/internal/faultpoint"
	"pgtrain/internal/metrics"
	"pgtrain/internal/workloop"
	"pgtrain/messages"
	"pgtrain/preprocessor/transform"
)

// JobFailer ends a job for a permanent error; *client.Client implements it.
type JobFailer interface {
	FailJob(ctx context.Context, jobID string, req messages.FailRequest) error
}

// Stats are the preprocessor's counters since it started.
type Stats struct {
	Processed    int64 // pages acknowledged after their READY batch was stored
	Rows         int64 // rows in those pages
	Duplicates   int64 // READY already held the batch (a redelivery or a re-published page)
	Redeliveries int64 // pages delivered more than once (NumDelivered > 1)
	Backpressure int64 // pages that waited because READY was full
	Failed       int64 // pages whose data failed their job (a bad row)
	Terminated   int64 // pages terminated because they cannot be decoded
	NoPlan       int64 // pages put back because their job had no plan
	Retries      int64 // READY publishes retried after an error other than full
}

type counters struct {
	processed, rows, duplicates, redeliveries, backpressure, failed, terminated, noPlan, retries atomic.Int64
}

// Preprocessor consumes RAW and publishes READY.
type Preprocessor struct {
	cfg   Config
	bus   Bus
	names messages.Names
	fail  JobFailer
	log   *slog.Logger
	n     counters
	m     metrics.Collectors
	full  atomic.Bool // READY refused a batch as full and has not accepted one since
	plans sync.Map    // job id -> *transform.Transformer
	nplan atomic.Int64

	inProgressEvery time.Duration
}

// maxCachedPlans bounds the transformer cache; compiled plans are small.
const maxCachedPlans = 64

// Bus is the JetStream side of a preprocessor: it consumes RAW, publishes READY and reads
// plans from the state bucket. pgtrain's roles are given one that has declared them.
type Bus interface {
	JetStream() jetstream.JetStream
	StateKV() jetstream.KeyValue
	Names() messages.Names
}

// New returns a Preprocessor. cfg is completed with defaults and validated.
func New(cfg Config, b Bus, f JobFailer, log *slog.Logger) (*Preprocessor, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if b == nil || f == nil {
		return nil, errors.New("preprocessor: a bus and a job failer are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Preprocessor{cfg: cfg, bus: b, names: b.Names(), fail: f, log: log}
	p.m = newMetrics(&p.n)
	return p, nil
}

// Stats returns the counters.
func (p *Preprocessor) Stats() Stats {
	return Stats{
		Processed: p.n.processed.Load(), Rows: p.n.rows.Load(), Duplicates: p.n.duplicates.Load(),
		Redeliveries: p.n.redeliveries.Load(), Backpressure: p.n.backpressure.Load(), Failed: p.n.failed.Load(),
		Terminated: p.n.terminated.Load(), NoPlan: p.n.noPlan.Load(), Retries: p.n.retries.Load(),
	}
}

// Run consumes RAW until ctx is cancelled. Then it stops pulling, finishes the pages in
// hand (a page waiting for room in READY is handed back instead), hands back the pages
// buffered in the client, and returns nil.
func (p *Preprocessor) Run(ctx context.Context) error {
	p.log.Info("preprocessor started", "concurrency", p.cfg.Concurrency)
	stopSummary := p.summarize()
	defer stopSummary()
	backoff := p.backoff()
	for ctx.Err() == nil {
		cons, err := p.bus.JetStream().Consumer(ctx, p.names.RawStream(), messages.PreprocDurable)
		if err != nil {
			if ctx.Err() == nil {
				p.log.Warn("looking up the RAW consumer failed; retrying", "consumer", messages.PreprocDurable, "error", err, "retry_in", backoff.Next())
				backoff.Wait(ctx)
			}
			continue
		}
		p.inProgressEvery = p.cfg.InProgressEvery
		if p.inProgressEvery == 0 {
			p.inProgressEvery = max(cons.CachedInfo().Config.AckWait/3, 100*time.Millisecond)
		}
		if err := p.consume(ctx, cons); err != nil && ctx.Err() == nil {
			p.log.Warn("consuming RAW stopped; subscribing again", "error", err, "retry_in", backoff.Next())
			backoff.Wait(ctx)
			continue
		}
		backoff.Reset()
	}
	return nil
}

// backoff is the wait between retries of a subscription or a READY publish.
func (p *Preprocessor) backoff() *workloop.Backoff {
	return &workloop.Backoff{Min: p.cfg.RetryMin, Max: p.cfg.RetryMax}
}

// consume runs the workers on one message iterator until it closes.
func (p *Preprocessor) consume(ctx context.Context, cons jetstream.Consumer) error {
	it, err := cons.Messages(jetstream.PullMaxMessages(p.cfg.Prefetch))
	if err != nil {
		return err
	}
	// Drain delivers what the client has buffered and then closes the iterator; the workers
	// hand those pages straight back.
	stopDrain := context.AfterFunc(ctx, it.Drain)
	defer stopDrain()
	var wg sync.WaitGroup
	var firstErr error
	var once sync.Once
	for range p.cfg.Concurrency {
		wg.Go(func() {
			var s scratch
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
					p.settle(ctx, msg, action{kind: actNak})
					continue
				}
				p.handle(ctx, msg, &s)
			}
		})
	}
	wg.Wait()
	return firstErr
}

type actKind int

const (
	actAck actKind = iota
	actNak
	actTerm
)

type action struct {
	kind  actKind
	delay time.Duration
}

// scratch is one worker's memory for the pages it transforms: the READY batch and its
// encoding. Pages are megabytes; reused, they are allocated once per worker instead of
// twice per page, which halves the garbage the preprocessor makes and so the collections
// whose timing sets its peak memory.
type scratch struct {
	ready   messages.ReadyBatch
	encoded []byte
}

// handle processes one page and then acknowledges, naks or terminates it.
func (p *Preprocessor) handle(ctx context.Context, msg jetstream.Msg, s *scratch) {
	if md, err := msg.Metadata(); err == nil && md.NumDelivered > 1 {
		p.n.redeliveries.Add(1)
		p.log.Info("RAW page delivered again: an earlier delivery was not acknowledged (its preprocessor died or stopped, or the acknowledgement was lost)",
			"subject", msg.Subject(), "delivery", md.NumDelivered)
	}
	stop := p.keepAlive(msg)
	act := p.process(ctx, msg, s)
	stop()
	p.settle(ctx, msg, act)
}

// keepAlive marks the message in progress periodically until stop is called, so that a page
// waiting for READY is not redelivered to another preprocessor meanwhile.
func (p *Preprocessor) keepAlive(msg jetstream.Msg) (stop func()) {
	var mu sync.Mutex
	stopped := false
	mu.Lock()
	defer mu.Unlock()
	var t *time.Timer
	t = time.AfterFunc(p.inProgressEvery, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		_ = msg.InProgress()
		t.Reset(p.inProgressEvery)
	})
	return func() {
		mu.Lock()
		stopped = true
		t.Stop()
		mu.Unlock()
	}
}

func (p *Preprocessor) process(ctx context.Context, msg jetstream.Msg, s *scratch) action {
	began := time.Now()
	work := context.WithoutCancel(ctx)
	raw, err := messages.DecodeRaw(msg.Data())
	if err != nil {
		p.n.terminated.Add(1)
		p.log.Error("terminating a RAW page that cannot be decoded", "subject", msg.Subject(), "error", err,
			"unknown_version", errors.Is(err, messages.ErrUnknownVersion))
		// The page is gone for good, so its job can never finish: say so.
		if id, perr := p.names.ParseRawSubject(msg.Subject()); perr == nil {
			p.failJob(work, id, fmt.Sprintf("RAW page %s cannot be decoded: %v", msg.Subject(), err))
		}
		return action{kind: actTerm}
	}
	log := p.log.With("job_id", raw.JobID, "batch", raw.BatchID.String())
	if msg.Subject() != p.names.RawSubject(raw.BatchID) {
		log.Warn("RAW page on an unexpected subject", "subject", msg.Subject())
	}
	t, err := p.transformer(work, raw.JobID)
	switch {
	case errors.Is(err, bus.ErrNoPlan):
		p.n.noPlan.Add(1)
		log.Warn("page of a job without a plan; putting it back", "retry_in", p.cfg.NoPlanDelay)
		return action{kind: actNak, delay: p.cfg.NoPlanDelay}
	case errors.Is(err, transform.ErrPlan), errors.Is(err, messages.ErrUnknownVersion):
		if !p.failJob(work, raw.BatchID, fmt.Sprintf("preprocessing: %v", err)) {
			return action{kind: actNak, delay: p.cfg.RetryMax}
		}
		p.n.failed.Add(1)
		return action{kind: actTerm}
	case err != nil:
		log.Warn("reading the plan failed; putting the page back", "error", err, "retry_in", p.cfg.RetryMax)
		return action{kind: actNak, delay: p.cfg.RetryMax}
	}

	ready := &s.ready
	if err := t.ApplyInto(raw, ready); err != nil {
		// A bad row, or a page that does not match its plan: no retry can fix it.
		log.Error("failing the job: a page cannot be transformed", "error", err)
		if !p.failJob(work, raw.BatchID, err.Error()) {
			return action{kind: actNak, delay: p.cfg.RetryMax}
		}
		p.n.failed.Add(1)
		return action{kind: actTerm}
	}
	// The publish copies the bytes into the connection's buffer: they are free for the next
	// page once it returns.
	data, err := messages.EncodeReadyInto(s.encoded, ready)
	s.encoded = data
	if mp := p.bus.JetStream().Conn().MaxPayload(); err == nil && len(data) > int(mp) {
		err = fmt.Errorf("ready batch %s is %d bytes, over the NATS max payload of %d; lower page_rows", ready.BatchID, len(data), mp)
	}
	if err != nil {
		log.Error("failing the job: a ready batch cannot be published", "error", err)
		if !p.failJob(work, raw.BatchID, err.Error()) {
			return action{kind: actNak, delay: p.cfg.RetryMax}
		}
		p.n.failed.Add(1)
		return action{kind: actTerm}
	}
	transformed := time.Now()
	if !p.publish(ctx, log, p.names.ReadySubject(ready.BatchID), data) {
		return action{kind: actNak} // shutting down while READY was full: another preprocessor takes it
	}
	log.Debug("page preprocessed", "rows", ready.Rows(), "transform_s", transformed.Sub(began).Seconds(),
		"publish_s", time.Since(transformed).Seconds())
	faultpoint.Hit(faultpoint.PreprocessorAfterReadyPublish)
	p.n.processed.Add(1)
	p.n.rows.Add(int64(ready.Rows()))
	return action{kind: actAck}
}

// publish stores the batch in READY, waiting for the PubAck. A refusal because the subject
// already holds the batch is success. A full stream, or an error on the way, is retried
// until it passes or ctx is cancelled (false).
func (p *Preprocessor) publish(ctx context.Context, log *slog.Logger, subject string, data []byte) bool {
	backoff := p.backoff()
	waited := false
	for {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.PublishTimeout)
		_, err := p.bus.JetStream().Publish(pctx, subject, data, jetstream.WithExpectStream(p.names.ReadyStream()))
		cancel()
		switch {
		case err == nil:
			if p.full.CompareAndSwap(true, false) {
				p.log.Info("READY has room again; publishing")
			}
			return true
		case bus.IsDuplicateSubject(err):
			p.n.duplicates.Add(1)
			log.Info("READY already holds this batch (the page was delivered or published again); acknowledging it")
			return true
		case bus.IsStreamFull(err):
			if !waited {
				waited = true
				p.n.backpressure.Add(1)
			}
			if p.full.CompareAndSwap(false, true) {
				p.log.Info("READY is full; holding pages until the trainer makes room", "subject", subject)
			}
		default:
			p.n.retries.Add(1)
			log.Warn("publishing to READY failed; retrying", "error", err, "retry_in", backoff.Next())
		}
		if !backoff.Wait(ctx) {
			return false
		}
	}
}

// settle acknowledges (waiting for the server's confirmation), naks or terminates a page.
func (p *Preprocessor) settle(ctx context.Context, msg jetstream.Msg, a action) {
	var err error
	switch a.kind {
	case actAck:
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.ShutdownTimeout)
		err = msg.DoubleAck(actx)
		cancel()
		if err == nil {
			faultpoint.Hit(faultpoint.PreprocessorAfterRawAck)
		}
	case actNak:
		if a.delay > 0 {
			err = msg.NakWithDelay(a.delay)
		} else {
			err = msg.Nak()
		}
	case actTerm:
		err = msg.Term()
	}
	if err != nil {
		// The page comes back after AckWait; READY refuses a second copy of its batch.
		p.log.Warn("acknowledging a RAW page failed; it will be redelivered", "subject", msg.Subject(), "error", err)
	}
}

// failJob reports a permanent error with the page at fault to the coordinator; false means
// it could not, and the page must stay to be tried again.
func (p *Preprocessor) failJob(ctx context.Context, page messages.BatchID, reason string) bool {
	jobID := page.JobID
	fctx, cancel := context.WithTimeout(ctx, p.cfg.ShutdownTimeout)
	defer cancel()
	if err := p.fail.FailJob(fctx, jobID, messages.FailRequest{Error: reason, Batch: &page}); err != nil {
		p.log.Error("failing the job failed; the page will be tried again", "job_id", jobID, "reason", reason, "error", err)
		return false
	}
	p.plans.Delete(jobID)
	return true
}

// transformer returns the job's compiled plan, reading it from the KV bucket once.
func (p *Preprocessor) transformer(ctx context.Context, jobID string) (*transform.Transformer, error) {
	if t, ok := p.plans.Load(jobID); ok {
		return t.(*transform.Transformer), nil
	}
	plan, err := bus.GetPlan(ctx, p.bus.StateKV(), jobID)
	if err != nil {
		return nil, err
	}
	t, err := transform.Compile(plan)
	if err != nil {
		return nil, fmt.Errorf("job %s: %w", jobID, err)
	}
	if p.nplan.Add(1) > maxCachedPlans {
		p.plans.Clear()
		p.nplan.Store(1)
	}
	p.plans.Store(jobID, t)
	return t, nil
}

// summarize logs the counters at info every SummaryEvery, and once when stopped.
func (p *Preprocessor) summarize() func() {
	return workloop.Summarize(p.cfg.SummaryEvery, p.Stats, func(s Stats) int64 { return s.Rows },
		func(s Stats, rowsPerSecond float64, final bool) {
			msg := "preprocess progress"
			if final {
				msg = "preprocessor stopped"
			}
			p.log.Info(msg, "processed", s.Processed, "rows", s.Rows, "rows_per_second", rowsPerSecond,
				"duplicates", s.Duplicates, "redeliveries", s.Redeliveries, "backpressure", s.Backpressure,
				"failed", s.Failed, "terminated", s.Terminated, "no_plan", s.NoPlan, "retries", s.Retries)
		})
}
