package coordinator

import (
	"context"
	"crypto/rand"
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

	"pgtrain/internal/bus"
	"pgtrain/messages"
)

// Coordinator serves the HTTP API and owns the job, lease and trainer state.
type Coordinator struct {
	cfg     Config
	sources map[string]*pgxpool.Pool
	bus     *bus.Bus
	st      store
	log     *slog.Logger
	now     func() time.Time

	mu        sync.Mutex
	jobs      map[string]*job
	order     []*job // creation order: the oldest job first
	leaseIdem map[string]idemLease
	submits   map[string]*submitCall

	// probePools are the readiness probe's own connections, made when a pool is busy.
	probeMu    sync.Mutex
	probePools map[string]*pgxpool.Pool

	ready    chan struct{}
	started  atomic.Bool
	addr     string
	bg       sync.WaitGroup // snapshot releases and purges
	bgCtx    context.Context
	bgCancel context.CancelFunc
}

// loadTimeout bounds reading the existing state at start-up.
const loadTimeout = 30 * time.Second

// New builds a coordinator on the given sources ("" is the default source) and bus, and
// loads the jobs already in the state bucket, so a restarted coordinator resumes them.
func New(cfg Config, sources map[string]*pgxpool.Pool, b *bus.Bus, log *slog.Logger) (*Coordinator, error) {
	if b == nil || b.State == nil {
		return nil, errors.New("coordinator: a bus with its state bucket is required")
	}
	if cfg.ReadyMaxBytes == 0 {
		cfg.ReadyMaxBytes = b.Limits.ReadyMaxBytes // what READY was declared with
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
		st:         store{kv: b.State},
		log:        log,
		now:        time.Now,
		jobs:       map[string]*job{},
		leaseIdem:  map[string]idemLease{},
		submits:    map[string]*submitCall{},
		probePools: map[string]*pgxpool.Pool{},
		ready:      make(chan struct{}),
	}
	c.bgCtx, c.bgCancel = context.WithCancel(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), loadTimeout)
	defer cancel()
	jobs, err := c.st.loadJobs(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading job state: %w", err)
	}
	for _, j := range jobs {
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
	if len(jobs) > 0 {
		log.Info("resumed jobs from the state bucket", "jobs", len(jobs))
	}
	return c, nil
}

// maxPayload is the configured message limit, else the server's (known once connected).
func (c *Coordinator) maxPayload() int {
	if c.cfg.MaxPayload > 0 {
		return c.cfg.MaxPayload
	}
	if c.bus.NC != nil {
		if mp := c.bus.NC.MaxPayload(); mp > 0 {
			return int(mp)
		}
	}
	return 1 << 20 // the server's default
}

// addJob registers a job in memory, keeping c.order sorted by creation time.
func (c *Coordinator) addJob(j *job) {
	c.jobs[j.rec.ID] = j
	i := len(c.order)
	for i > 0 && c.order[i-1].rec.CreatedAt.After(j.rec.CreatedAt) {
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
	srv := &http.Server{
		Handler:           c.routes(),
		ReadHeaderTimeout: c.cfg.ReadHeaderTimeout,
		ReadTimeout:       c.cfg.ReadTimeout,
		WriteTimeout:      c.cfg.WriteTimeout,
		IdleTimeout:       c.cfg.IdleTimeout,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	c.addr = ln.Addr().String()
	close(c.ready)
	c.log.Info("coordinator listening", "addr", c.addr, "lease_ttl", c.cfg.LeaseTTL, "window", c.cfg.Window)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
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
	id := j.rec.ID
	c.bg.Go(func() {
		ctx, cancel := context.WithTimeout(c.bgCtx, time.Minute)
		defer cancel()
		var errs []error
		if c.bus.Ready != nil {
			errs = append(errs, purge(ctx, c.bus.Ready, messages.ReadyJobSubjects(id)))
		}
		if c.bus.Raw != nil {
			errs = append(errs, purge(ctx, c.bus.Raw, messages.RawJobSubjects(id)))
		}
		if err := errors.Join(errs...); err != nil {
			c.log.Warn("purging an ended job's batches", "job_id", id, "error", err)
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		rec := j.rec
		rec.Cleaned = true
		if err := c.writeJob(ctx, j, rec); err != nil {
			c.log.Warn("recording an ended job's cleanup", "job_id", id, "error", err)
		}
	})
}

func purge(ctx context.Context, s jetstream.Stream, subject string) error {
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
