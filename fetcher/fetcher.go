package fetcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"pgtrain/coordinator/client"
	"pgtrain/internal/bus"
	"pgtrain/internal/faultpoint"
	"pgtrain/internal/workloop"
	"pgtrain/messages"
)

// Coordinator is what a fetcher needs from the coordinator; *client.Client implements it.
// ReportLease must answer an error wrapping client.ErrLeaseLost when the lease is gone.
type Coordinator interface {
	Lease(ctx context.Context, workerID string) (*messages.Lease, error)
	ReportLease(ctx context.Context, leaseID string, p messages.LeaseProgress) (*messages.Lease, error)
	FailJob(ctx context.Context, jobID string, req messages.FailRequest) error
}

// Stats are the fetcher's counters since it started.
type Stats struct {
	Ranges         int64 // ranges completed
	Pages          int64 // pages published (duplicates included)
	Rows           int64 // rows published
	Bytes          int64 // encoded bytes published
	Duplicates     int64 // publishes the stream reported as duplicates (a resumed range)
	ReadRetries    int64 // page reads retried after a PostgreSQL error
	PublishRetries int64 // publishes retried after a NATS error
	LeasesLost     int64 // leases the coordinator took back while held
	Released       int64 // leases handed back (shutdown, or a job this fetcher cannot read)
	JobsFailed     int64 // jobs failed for a permanent read error
}

type counters struct {
	ranges, pages, rows, bytes, duplicates, readRetries, publishRetries, leasesLost, released, jobsFailed atomic.Int64
}

// Fetcher leases ranges and publishes their pages to RAW.
type Fetcher struct {
	cfg     Config
	sources map[string]*pgxpool.Pool
	bus     Bus
	names   messages.Names
	coord   Coordinator
	log     *slog.Logger
	jobs    map[string]*job // used by Run's goroutine only
	n       counters
	m       *fetchMetrics
}

type job struct {
	plan     *messages.Plan
	reader   *RangeReader
	maxBytes int
}

// maxCachedJobs bounds the plan cache; plans are small and jobs few.
const maxCachedJobs = 32

// errNoSource: this fetcher has no pool for the job's source; another fetcher may have.
var errNoSource = errors.New("no such source configured on this fetcher")

// Bus is the JetStream side of a fetcher: it publishes pages to RAW and reads plans from the
// state bucket. pgtrain's roles are given one that has declared the streams and the bucket.
type Bus interface {
	JetStream() jetstream.JetStream
	StateKV() jetstream.KeyValue
	Names() messages.Names
}

// New returns a Fetcher. sources maps a job spec's Source to a pool; "" is the default
// source. cfg is completed with defaults and validated.
func New(cfg Config, sources map[string]*pgxpool.Pool, b Bus, c Coordinator, log *slog.Logger) (*Fetcher, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(sources) == 0 {
		return nil, errors.New("fetcher: no PostgreSQL source")
	}
	if b == nil || c == nil {
		return nil, errors.New("fetcher: a bus and a coordinator are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Fetcher{
		cfg: cfg, sources: sources, bus: b, names: b.Names(), coord: c,
		log:  log.With("worker_id", cfg.WorkerID),
		jobs: map[string]*job{},
	}
	f.m = newFetchMetrics(&f.n)
	return f, nil
}

// Stats returns the counters.
func (f *Fetcher) Stats() Stats {
	return Stats{
		Ranges: f.n.ranges.Load(), Pages: f.n.pages.Load(), Rows: f.n.rows.Load(), Bytes: f.n.bytes.Load(),
		Duplicates: f.n.duplicates.Load(), ReadRetries: f.n.readRetries.Load(),
		PublishRetries: f.n.publishRetries.Load(), LeasesLost: f.n.leasesLost.Load(),
		Released: f.n.released.Load(), JobsFailed: f.n.jobsFailed.Load(),
	}
}

// Run leases and fetches ranges until ctx is cancelled, then finishes or abandons the page
// in hand, hands the lease back and returns nil.
func (f *Fetcher) Run(ctx context.Context) error {
	f.log.Info("fetcher started", "sources", len(f.sources))
	stopSummary := f.summarize()
	defer stopSummary()
	newPlan, stopWatch, err := bus.WatchPlans(ctx, f.bus.StateKV())
	if err != nil {
		f.log.Warn("new jobs are found by polling alone", "poll", f.cfg.Poll, "error", err)
	}
	defer stopWatch()
	backoff := f.backoff()
	wait := f.cfg.Poll // until the next look for work when there is none
	for ctx.Err() == nil {
		lease, err := f.coord.Lease(ctx, f.cfg.WorkerID)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if client.Refused(err) {
				return fmt.Errorf("fetcher: the coordinator refused this worker's token (check --coordinator-token-file): %w", err)
			}
			f.log.Warn("asking the coordinator for a lease failed; retrying", "error", err, "retry_in", backoff.Next())
			backoff.Wait(ctx)
			continue
		}
		backoff.Reset()
		if lease == nil {
			wait = f.idle(ctx, newPlan, wait)
			continue
		}
		wait = f.cfg.Poll
		f.runLease(ctx, lease)
	}
	return nil
}

// planLag is the first wait after a new plan is stored: the coordinator stores the plan a
// moment before its job takes leases. The waits double from it back to the poll interval.
const planLag = 5 * time.Millisecond

// idle waits before the next look for work: wait, cut short when a new plan is stored. It
// returns the wait after this one.
func (f *Fetcher) idle(ctx context.Context, newPlan <-chan struct{}, wait time.Duration) time.Duration {
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return min(2*wait, f.cfg.Poll)
	case <-newPlan:
		return min(planLag, f.cfg.Poll)
	case <-ctx.Done():
		return wait
	}
}

// backoff is the wait between retries of one read, publish or coordinator call.
func (f *Fetcher) backoff() *workloop.Backoff {
	return &workloop.Backoff{Min: f.cfg.RetryMin, Max: f.cfg.RetryMax}
}

// summarize logs totals and rows/s at info every SummaryEvery, and once when stopped.
func (f *Fetcher) summarize() func() {
	return workloop.Summarize(f.cfg.SummaryEvery, f.Stats, func(s Stats) int64 { return s.Rows },
		func(s Stats, rowsPerSecond float64, final bool) {
			msg := "fetch progress"
			if final {
				msg = "fetcher stopped"
			}
			f.log.Info(msg, "ranges", s.Ranges, "pages", s.Pages, "rows", s.Rows,
				"rows_per_second", rowsPerSecond, "duplicates", s.Duplicates,
				"read_retries", s.ReadRetries, "publish_retries", s.PublishRetries, "leases_lost", s.LeasesLost)
		})
}

// job returns the plan and reader of a job, from the cache or the KV bucket.
func (f *Fetcher) job(ctx context.Context, jobID string) (*job, error) {
	nc := f.bus.JetStream().Conn()
	maxBytes := int(nc.MaxPayload()) - f.cfg.PayloadHeadroom
	if j, ok := f.jobs[jobID]; ok && j.maxBytes == maxBytes {
		return j, nil
	}
	if maxBytes < 1024 {
		return nil, fmt.Errorf("the NATS max payload (%d bytes) leaves no room for pages; not connected yet?", nc.MaxPayload())
	}
	began := time.Now()
	plan, err := bus.GetPlan(ctx, f.bus.StateKV(), jobID)
	if err != nil {
		return nil, err
	}
	f.log.Debug("plan read", "job_id", jobID, "seconds", time.Since(began).Seconds())
	pool, ok := f.sources[plan.Spec.Source]
	if !ok {
		return nil, fmt.Errorf("job %s reads source %q: %w", jobID, plan.Spec.Source, errNoSource)
	}
	r, err := NewRangeReader(pool, plan, maxBytes)
	if err != nil {
		return nil, err
	}
	if len(f.jobs) >= maxCachedJobs {
		clear(f.jobs)
	}
	j := &job{plan: plan, reader: r, maxBytes: maxBytes}
	f.jobs[jobID] = j
	return j, nil
}

func (f *Fetcher) runLease(ctx context.Context, lease *messages.Lease) {
	log := f.log.With("job_id", lease.JobID, "pass", lease.Pass, "range", lease.Range.Index, "lease_id", lease.ID)
	s := &session{f: f, log: log, lease: lease,
		prog: messages.LeaseProgress{WorkerID: f.cfg.WorkerID, NextPage: lease.NextPage, LastKey: lease.LastKey, LastKeyText: lease.LastKeyText, Rows: lease.Rows}}
	s.setInterval(lease)
	j, err := f.job(ctx, lease.JobID)
	if err != nil {
		if errors.Is(err, ErrBadPlan) {
			s.failJob(ctx, err)
			return
		}
		if ctx.Err() == nil {
			log.Error("cannot fetch this job here; handing the lease back", "error", err)
		}
		s.release(ctx)
		// Do not take the same lease straight back.
		workloop.Sleep(ctx, f.cfg.RetryMax)
		return
	}
	s.job = j
	s.run(ctx)
}

// session is one held lease: a reader goroutine reads pages ahead, the session's own loop
// publishes them in order and records each on the lease, and a heartbeat goroutine renews
// the lease while a page takes long.
type session struct {
	f     *Fetcher
	log   *slog.Logger
	lease *messages.Lease
	job   *job

	reportMu   sync.Mutex // reports go one at a time, in order
	mu         sync.Mutex // guards prog, lastReport, interval
	prog       messages.LeaseProgress
	lastReport time.Time
	interval   time.Duration

	lost   atomic.Bool
	cancel context.CancelFunc // stops the reader and the heartbeat
}

type pageResult struct {
	page *Page
	err  error // permanent
}

func (s *session) run(ctx context.Context) {
	leaseCtx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	defer cancel()
	s.mu.Lock()
	s.lastReport = time.Now()
	s.mu.Unlock()

	pages := make(chan pageResult, s.f.cfg.ReadAhead)
	readerDone := make(chan struct{})
	go func() { defer close(readerDone); s.read(leaseCtx, pages) }()
	hbCtx, stopHB := context.WithCancel(leaseCtx)
	hbDone := make(chan struct{})
	go func() { defer close(hbDone); s.heartbeat(hbCtx) }()
	stop := func() {
		cancel()
		stopHB()
		<-hbDone
		<-readerDone
	}
	defer stop()

	start := time.Now()
	var rows, pagesOut int64
	for {
		var res pageResult
		var ok bool
		waitStart := time.Now()
		if leaseCtx.Err() == nil {
			select {
			case res, ok = <-pages:
			case <-leaseCtx.Done():
			}
		}
		if leaseCtx.Err() != nil {
			stop()
			s.abandon(ctx)
			return
		}
		if !ok {
			// The reader stops on its own only after the last page or a permanent error.
			stop()
			s.abandon(ctx)
			return
		}
		if res.err != nil {
			stop()
			s.failJob(ctx, res.err)
			return
		}
		p := res.page
		pubStart := time.Now()
		if !s.publish(ctx, leaseCtx, p) {
			stop()
			s.abandon(ctx)
			return
		}
		s.log.Debug("page published", "page", p.Batch.Page, "rows", p.Batch.Rows(),
			"waited_for_read_s", pubStart.Sub(waitStart).Seconds(), "publish_s", time.Since(pubStart).Seconds())
		if !p.Batch.Last {
			faultpoint.Hit(faultpoint.FetcherAfterPublish)
		}
		rows += int64(p.Batch.Rows())
		pagesOut++
		s.mu.Lock()
		s.prog.NextPage = p.Batch.Page + 1
		s.prog.LastKey, s.prog.LastKeyText = p.LastKey, p.LastKeyText
		s.prog.Rows += int64(p.Batch.Rows())
		s.mu.Unlock()
		if p.Batch.Last {
			stop()
			if s.complete(ctx) {
				el := time.Since(start)
				s.f.n.ranges.Add(1)
				s.log.Debug("range fetched", "rows", rows, "pages", pagesOut, "seconds", el.Seconds(),
					"rows_per_second", workloop.Rate(rows, el))
			}
			return
		}
		// A failed report is not fatal: the next one, or the heartbeat, carries the progress.
		if s.report(context.WithoutCancel(ctx), false, false) == nil {
			faultpoint.Hit(faultpoint.FetcherAfterReport)
		}
	}
}

// read reads the pages of the range, from the lease's resume point, into out. A read that
// fails for a reason that can pass (a restarted server, a dropped connection) is retried:
// the same page from the same key.
func (s *session) read(ctx context.Context, out chan<- pageResult) {
	defer close(out)
	page, last, lastText := s.lease.NextPage, s.lease.LastKey, s.lease.LastKeyText
	backoff := s.f.backoff()
	for {
		p, err := s.job.reader.ReadPage(ctx, s.lease.Pass, s.lease.Range, page, last, lastText)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if Permanent(err) {
				select {
				case out <- pageResult{err: err}:
				case <-ctx.Done():
				}
				return
			}
			s.f.n.readRetries.Add(1)
			s.log.Warn("reading a page failed; retrying the same page from the same key",
				"page", page, "after_key", last, "error", err, "retry_in", backoff.Next())
			if !backoff.Wait(ctx) {
				return
			}
			continue
		}
		backoff.Reset()
		select {
		case out <- pageResult{page: p}:
		case <-ctx.Done():
			return
		}
		if p.Batch.Last {
			return
		}
		page, last, lastText = page+1, p.LastKey, p.LastKeyText
	}
}

// publish sends a page to RAW and waits for the PubAck, retrying with the same message id so
// the stream keeps one copy. Each attempt runs to its timeout even during shutdown; it
// gives up (false) when the lease is lost or the fetcher is stopping.
func (s *session) publish(ctx, leaseCtx context.Context, p *Page) bool {
	id := p.Batch.BatchID
	msg := &nats.Msg{Subject: s.f.names.PageSubject(s.job.plan.Kind, id), Data: p.Data}
	backoff := s.f.backoff()
	for {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.f.cfg.PublishTimeout)
		ack, err := s.f.bus.JetStream().PublishMsg(pctx, msg, jetstream.WithMsgID(id.MsgID()), jetstream.WithExpectStream(s.f.names.PageStream(s.job.plan.Kind)))
		cancel()
		if err == nil {
			s.f.n.pages.Add(1)
			s.f.n.rows.Add(int64(p.Batch.Rows()))
			s.f.n.bytes.Add(int64(len(p.Data)))
			s.f.m.published(s.job.plan.Spec.Source, p)
			if ack.Duplicate {
				s.f.n.duplicates.Add(1)
				s.log.Info("page was already in RAW: published before the lease recorded it (a resumed range or a retried publish); the stream dropped this copy", "page", id.Page)
			}
			return true
		}
		if errors.Is(err, nats.ErrMaxPayload) {
			// The server's limit shrank under us: the job's reader is rebuilt on the next lease.
			s.log.Error("page is over the server's max payload; handing the lease back", "page", id.Page, "bytes", len(p.Data), "error", err)
			delete(s.f.jobs, s.lease.JobID)
			return false
		}
		if leaseCtx.Err() != nil {
			return false
		}
		s.f.n.publishRetries.Add(1)
		s.log.Warn("publishing a page failed; retrying with the same message id", "page", id.Page, "error", err, "retry_in", backoff.Next())
		if !backoff.Wait(leaseCtx) {
			return false
		}
	}
}

// report renews the lease with the progress so far (or completes or releases it). It
// returns an error wrapping client.ErrLeaseLost when the lease is gone, and then stops the
// session's work.
func (s *session) report(ctx context.Context, done, release bool) error {
	s.reportMu.Lock()
	defer s.reportMu.Unlock()
	if s.lost.Load() {
		return client.ErrLeaseLost
	}
	s.mu.Lock()
	p := s.prog
	s.mu.Unlock()
	p.Done, p.Release = done, release
	rctx, cancel := context.WithTimeout(ctx, s.f.cfg.ReportTimeout)
	defer cancel()
	l, err := s.f.coord.ReportLease(rctx, s.lease.ID, p)
	if errors.Is(err, client.ErrLeaseLost) {
		if s.lost.CompareAndSwap(false, true) {
			s.f.n.leasesLost.Add(1)
			s.log.Info("lease lost; stopping this range", "next_page", p.NextPage, "error", err)
			if s.cancel != nil {
				s.cancel()
			}
		}
		return err
	}
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("reporting lease progress failed", "next_page", p.NextPage, "error", err)
		}
		return err
	}
	s.mu.Lock()
	s.lastReport = time.Now()
	s.mu.Unlock()
	s.setInterval(l)
	return nil
}

// setInterval keeps heartbeats well inside the lease's expiry.
func (s *session) setInterval(l *messages.Lease) {
	iv := s.f.cfg.HeartbeatEvery
	if l != nil && !l.ExpiresAt.IsZero() {
		if left := time.Until(l.ExpiresAt) / 3; left > 0 && left < iv {
			iv = max(left, 50*time.Millisecond)
		}
	}
	s.mu.Lock()
	s.interval = iv
	s.mu.Unlock()
}

// heartbeat renews the lease whenever no report went out for an interval (a slow page,
// a publish being retried).
func (s *session) heartbeat(ctx context.Context) {
	for {
		s.mu.Lock()
		wait := time.Until(s.lastReport.Add(s.interval))
		s.mu.Unlock()
		if wait > 0 {
			if !workloop.Sleep(ctx, wait) {
				return
			}
			continue
		}
		if s.report(ctx, false, false) != nil {
			if s.lost.Load() || !workloop.Sleep(ctx, s.f.cfg.RetryMin) {
				return
			}
		}
	}
}

// complete records the range as done, retrying until the coordinator answers. If it cannot
// (shutdown), the lease expires and the next holder re-publishes the tail, which dedup drops.
func (s *session) complete(ctx context.Context) bool {
	backoff := s.f.backoff()
	for {
		err := s.report(context.WithoutCancel(ctx), true, false)
		if err == nil {
			return true
		}
		if s.lost.Load() {
			return false
		}
		if ctx.Err() != nil {
			s.log.Warn("could not record the range as done before stopping; its next holder re-publishes duplicates", "error", err)
			return false
		}
		if !backoff.Wait(ctx) {
			return false
		}
	}
}

// abandon ends a session that did not finish: nothing to do if the lease was lost,
// otherwise the lease is handed back with its progress.
func (s *session) abandon(ctx context.Context) {
	if s.lost.Load() {
		return
	}
	s.release(ctx)
}

func (s *session) release(ctx context.Context) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.f.cfg.ShutdownTimeout)
	defer cancel()
	if err := s.report(rctx, false, true); err != nil {
		if !s.lost.Load() {
			s.log.Warn("handing the lease back failed; it will expire", "error", err)
		}
		return
	}
	s.f.n.released.Add(1)
	s.mu.Lock()
	next := s.prog.NextPage
	s.mu.Unlock()
	s.log.Info("lease handed back", "next_page", next)
}

// failJob ends the job: a page that cannot be read will never be, on any fetcher.
func (s *session) failJob(ctx context.Context, cause error) {
	s.mu.Lock()
	next := s.prog.NextPage
	s.mu.Unlock()
	reason := fmt.Sprintf("fetching range %d page %d: %v", s.lease.Range.Index, next, cause)
	s.log.Error("failing the job: a page cannot be read", "page", next, "error", cause)
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.f.cfg.ReportTimeout)
	defer cancel()
	if err := s.f.coord.FailJob(fctx, s.lease.JobID, messages.FailRequest{
		Error: reason, WorkerID: s.f.cfg.WorkerID, LeaseID: s.lease.ID}); err != nil {
		s.log.Error("failing the job failed; handing the lease back", "error", err)
		s.release(ctx)
		return
	}
	s.f.n.jobsFailed.Add(1)
	delete(s.f.jobs, s.lease.JobID)
}
