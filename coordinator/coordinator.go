package coordinator

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"pgtrain/messages"
)

// Coordinator serves the HTTP API and owns the job, lease and trainer state.
type Coordinator struct {
	cfg     Config
	sources map[string]*pgxpool.Pool
	bus     Bus
	names   messages.Names
	st      store
	models  *models
	log     *slog.Logger
	now     func() time.Time

	// mu guards the jobs and their leases, and is held across each lease's KV write: a
	// grant looks at every job and the state it writes must be the state it decided on,
	// so one lock keeps that simple. It costs a serialised KV round trip per lease change
	// (a few ms on one host); BenchmarkLeaseLatency with 16 fetchers showed no better
	// grant latency from releasing it during writes, so the simpler lock stays.
	mu        sync.Mutex
	jobs      map[string]*job
	order     []*job // creation order: the oldest job first
	leaseIdem map[string]idemLease
	submits   map[string]*submitCall
	snapshots map[string]int // snapshots held or being planned, by source
	planning  map[string]int // submissions being planned, per source

	schemas schemaPolicy
	m       *coordMetrics

	tls *tls.Config // nil: plain HTTP
	// probePools are the readiness probe's own connections, made when a pool is busy.
	probeMu    sync.Mutex
	probePools map[string]*pgxpool.Pool

	ready    chan struct{}
	started  atomic.Bool
	addr     string
	bg       sync.WaitGroup // snapshot releases and purges
	bgCtx    context.Context
	bgCancel context.CancelFunc
	// jobsEnded wakes the retention loop when a job ends.
	jobsEnded chan struct{}
}

// loadTimeout bounds reading the existing state at start-up.
const loadTimeout = 30 * time.Second

// Bus is the JetStream side of the coordinator: the streams it reports on and purges, the
// bucket that holds job state and the store of finished models. pgtrain's roles are given
// one that has declared them.
type Bus interface {
	JetStream() jetstream.JetStream
	StateKV() jetstream.KeyValue
	Names() messages.Names
	ModelStore
}

// New builds a coordinator on the given sources ("" is the default source) and bus, and
// loads the jobs already in the state bucket, so a restarted coordinator resumes them. ctx
// bounds that loading (and the READY lookup when cfg.ReadyMaxBytes is zero).
func New(ctx context.Context, cfg Config, sources map[string]*pgxpool.Pool, b Bus, log *slog.Logger) (*Coordinator, error) {
	if b == nil || b.StateKV() == nil || b.JetStream() == nil {
		return nil, errors.New("coordinator: a bus with its state bucket is required")
	}
	ctx, cancel := context.WithTimeout(ctx, loadTimeout)
	defer cancel()
	names := b.Names()
	if cfg.ReadyMaxBytes == 0 {
		// What READY was declared with.
		ready, err := b.JetStream().Stream(ctx, names.ReadyStream())
		if err != nil {
			return nil, fmt.Errorf("coordinator: looking up %s: %w", names.ReadyStream(), err)
		}
		cfg.ReadyMaxBytes = ready.CachedInfo().Config.MaxBytes
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("coordinator config: %w", err)
	}
	if len(sources) == 0 {
		return nil, errors.New("coordinator: at least one source database is required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Coordinator{
		cfg:        cfg,
		sources:    sources,
		bus:        b,
		names:      names,
		st:         store{kv: b.StateKV()},
		models:     newModels(b, cfg.Limits.ModelCache),
		log:        log,
		now:        time.Now,
		jobs:       map[string]*job{},
		leaseIdem:  map[string]idemLease{},
		submits:    map[string]*submitCall{},
		probePools: map[string]*pgxpool.Pool{},
		snapshots:  map[string]int{},
		planning:   map[string]int{},
		ready:      make(chan struct{}),
		jobsEnded:  make(chan struct{}, 1),
	}
	c.schemas, _ = newSchemaPolicy(cfg.AllowSchemas) // Validate checked it
	c.registerMetrics()
	for source := range c.schemas.source {
		if _, ok := sources[source]; !ok {
			return nil, fmt.Errorf("coordinator config: allowed schemas name source %q, which is not configured", source)
		}
	}
	if cfg.TLSCertFile != "" {
		// Loaded now, so a bad certificate stops the start instead of the first request.
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("coordinator: TLS certificate: %w", err)
		}
		c.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	c.bgCtx, c.bgCancel = context.WithCancel(context.Background())
	jobs, err := c.st.loadJobs(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading job state: %w", err)
	}
	// Under c.mu like any other change: jobEnded's cleanup of an earlier job may already be
	// writing its record while later jobs are added.
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, j := range jobs {
		if j.loadErr != nil {
			c.failUnloadable(ctx, j)
		}
		c.addJob(j)
		switch {
		case j.rec.ended() && !j.rec.Cleaned:
			c.jobEnded(j)
		case j.rec.State == messages.JobRunning && j.plan.Snapshot != "" && !j.allRead():
			// The exported snapshot died with the previous process: fetchers that try to
			// join it fail, and report it.
			log.Warn("snapshot of a running job was lost with the previous coordinator", "job_id", j.rec.ID)
		}
	}
	for _, j := range jobs {
		// The previous coordinator may have died with every batch written, before or
		// while it keyed the output table: that step runs again.
		if j.rec.State == messages.JobRunning && j.prediction() {
			if err := c.maybeFinishPrediction(ctx, j); err != nil {
				log.Warn("ending a prediction job whose ranges are all written", "job_id", j.rec.ID, "error", err)
			}
		}
	}
	if len(jobs) > 0 {
		log.Info("resumed jobs from the state bucket", "jobs", len(jobs))
	}
	return c, nil
}

// failUnloadable records a job whose state cannot be loaded as failed, with the reason, so
// that the coordinator serves the others (a crash at every start helps nobody). An ended
// job keeps its outcome.
func (c *Coordinator) failUnloadable(ctx context.Context, j *job) {
	c.log.Error("a job's state cannot be loaded", "job_id", j.rec.ID, "state", j.rec.State, "error", j.loadErr)
	if j.rec.ended() {
		return
	}
	rec := j.rec
	rec.State, rec.Error, rec.UpdatedAt = messages.JobFailed, "the coordinator cannot load the job: "+j.loadErr.Error(), c.now()
	if rec.CreatedAt.IsZero() {
		rec.CreatedAt = rec.UpdatedAt
	}
	if err := c.writeJob(ctx, j, rec); err != nil {
		// Failed in memory for now; the next start tries again.
		c.log.Warn("recording an unloadable job as failed", "job_id", j.rec.ID, "error", err)
		j.rec = rec
	}
}

// maxPayload is the configured message limit, else the server's (known once connected).
func (c *Coordinator) maxPayload() int {
	if c.cfg.MaxPayload > 0 {
		return c.cfg.MaxPayload
	}
	if nc := c.bus.JetStream().Conn(); nc != nil {
		if mp := nc.MaxPayload(); mp > 0 {
			return int(mp)
		}
	}
	return 1 << 20 // the server's default
}

// addJob registers a job in memory, keeping c.order in the job order (creation time, then
// id) that list cursors rely on.
func (c *Coordinator) addJob(j *job) {
	c.jobs[j.rec.ID] = j
	i := len(c.order)
	for i > 0 && compareJobs(c.order[i-1].rec.CreatedAt, c.order[i-1].rec.ID, j.rec.CreatedAt, j.rec.ID) > 0 {
		i--
	}
	c.order = append(c.order, nil)
	copy(c.order[i+1:], c.order[i:])
	c.order[i] = j
}

// Handler is the HTTP API, for tests and for embedding in another server.
func (c *Coordinator) Handler() http.Handler { return c.routes() }

// Ready is closed once Run listens; Addr is valid from then on.
func (c *Coordinator) Ready() <-chan struct{} { return c.ready }

// Addr is the address Run listens on ("" before it does).
func (c *Coordinator) Addr() string {
	select {
	case <-c.ready:
		return c.addr
	default:
		return ""
	}
}

// Run serves the API until ctx is cancelled, then shuts down gracefully: in-flight requests
// finish, open snapshots are released. It returns nil on a clean shutdown.
func (c *Coordinator) Run(ctx context.Context) error {
	if !c.started.CompareAndSwap(false, true) {
		return errors.New("coordinator: Run called twice")
	}
	ln, err := net.Listen("tcp", c.cfg.Listen)
	if err != nil {
		return fmt.Errorf("coordinator: listening on %s: %w", c.cfg.Listen, err)
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && len(c.cfg.Tokens) == 0 && !c.cfg.InsecureNoAuth && !tcp.IP.IsLoopback() {
		ln.Close() // the name resolved to a non-loopback address
		return fmt.Errorf("coordinator: listening on %s: %w", ln.Addr(), ErrNoAuth)
	}
	srv := &http.Server{
		Handler:           c.routes(),
		ReadHeaderTimeout: c.cfg.ReadHeaderTimeout,
		ReadTimeout:       c.cfg.ReadTimeout,
		WriteTimeout:      c.cfg.WriteTimeout,
		IdleTimeout:       c.cfg.IdleTimeout,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		TLSConfig:         c.tls,
		// TLS handshake failures and the like: a scanner's noise, not the operator's concern.
		ErrorLog: slog.NewLogLogger(c.log.Handler(), slog.LevelDebug),
	}
	c.addr = ln.Addr().String()
	close(c.ready)
	c.log.Info("coordinator listening", "addr", c.addr, "tls", c.tls != nil, "auth_tokens", len(c.cfg.Tokens),
		"lease_ttl", c.cfg.LeaseTTL, "window", c.cfg.Window)
	switch {
	case len(c.cfg.Tokens) > 0:
	case c.cfg.InsecureNoAuth:
		c.log.Warn("no auth tokens and insecure no-auth: every route is open to anyone who reaches this address", "addr", c.addr)
	default:
		c.log.Warn("no auth tokens: every route is open, so the coordinator listens on loopback only", "addr", c.addr)
	}
	errc := make(chan error, 1)
	go func() {
		if c.tls != nil {
			errc <- srv.ServeTLS(ln, "", "") // the certificate is in srv.TLSConfig
			return
		}
		errc <- srv.Serve(ln)
	}()
	rctx, stopRetention := context.WithCancel(ctx)
	c.bg.Go(func() { c.retention(rctx) })
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	stopRetention()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.ShutdownTimeout)
	defer cancel()
	shutErr := srv.Shutdown(sctx)
	c.close(sctx)
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("coordinator: serving: %w", serveErr)
	}
	if shutErr != nil {
		return fmt.Errorf("coordinator: shutting down: %w", shutErr)
	}
	c.log.Info("coordinator stopped")
	return nil
}

// close releases the snapshots this process holds and waits for background work.
func (c *Coordinator) close(ctx context.Context) {
	c.mu.Lock()
	for _, j := range c.order {
		if j.snap != nil {
			c.releaseSnapshot(j, "the coordinator is stopping")
		}
	}
	c.mu.Unlock()
	done := make(chan struct{})
	go func() { c.bg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		c.bgCancel()
		<-done
	}
	c.bgCancel()
	c.probeMu.Lock()
	for _, p := range c.probePools {
		p.Close()
	}
	clear(c.probePools)
	c.probeMu.Unlock()
}

// releaseSnapshot ends a job's snapshot transaction in the background. Callers hold c.mu.
func (c *Coordinator) releaseSnapshot(j *job, why string) {
	s := j.snap
	if s == nil {
		return
	}
	j.snap = nil
	// Read under c.mu: writeJob replaces j.rec while the release runs.
	id := j.rec.ID
	c.snapshots[s.source]--
	c.bg.Go(func() {
		ctx, cancel := context.WithTimeout(c.bgCtx, 30*time.Second)
		defer cancel()
		if err := s.close(ctx); err != nil {
			c.log.Warn("releasing the snapshot", "job_id", id, "snapshot", s.id, "error", err)
			return
		}
		c.log.Info("snapshot released", "job_id", id, "snapshot", s.id, "reason", why)
	})
}

// jobEnded releases what an ended job holds: its snapshot and its batches on the bus.
// Callers hold c.mu.
func (c *Coordinator) jobEnded(j *job) {
	c.log.Info("job ended", "job_id", j.rec.ID, "state", j.rec.State, "error", j.rec.Error, "model_path", j.rec.ModelPath)
	c.releaseSnapshot(j, "the job ended")
	c.jobEndedSignal()
	id, prediction, plan := j.rec.ID, j.prediction(), j.plan
	c.bg.Go(func() {
		ctx, cancel := context.WithTimeout(c.bgCtx, time.Minute)
		defer cancel()
		errs := []error{
			c.purge(ctx, c.names.ReadyStream(), c.names.ReadyJobSubjects(id)),
			c.purge(ctx, c.names.RawStream(), c.names.RawJobSubjects(id)),
			c.purge(ctx, c.names.ScoreStream(), c.names.ScoreJobSubjects(id)),
		}
		if prediction {
			errs = append(errs, c.deleteScorerConsumer(ctx, id), c.dropLedger(ctx, plan))
		}
		if err := errors.Join(errs...); err != nil {
			c.log.Warn("purging an ended job's batches", "job_id", id, "error", err)
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if j.deleting || c.jobs[id] != j {
			return // its record is being removed
		}
		rec := j.rec
		rec.Cleaned = true
		if err := c.writeJob(ctx, j, rec); err != nil {
			c.log.Warn("recording an ended job's cleanup", "job_id", id, "error", err)
		}
	})
}

func (c *Coordinator) purge(ctx context.Context, stream, subject string) error {
	s, err := c.bus.JetStream().Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("purging %s: looking up %s: %w", subject, stream, err)
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSubject(subject)); err != nil {
		return fmt.Errorf("purging %s: %w", subject, err)
	}
	return nil
}

// newJobID is a short, subject-safe id that starts with the table's name for operators.
func newJobID(table string) string {
	if i := strings.LastIndexByte(table, '.'); i >= 0 {
		table = table[i+1:]
	}
	var prefix strings.Builder
	for _, r := range strings.ToLower(table) {
		if prefix.Len() >= 20 {
			break
		}
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			prefix.WriteRune(r)
		}
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	if prefix.Len() == 0 {
		prefix.WriteString("job")
	}
	return prefix.String() + "-" + hex.EncodeToString(b[:])
}
