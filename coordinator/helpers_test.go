package coordinator

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/coordinator/client"
	"pgtrain/internal/bus"
	"pgtrain/internal/testenv"
)

// env is one real PostgreSQL database and one real JetStream server.
type env struct {
	pool *pgxpool.Pool
	dsn  string
	bus  *bus.Bus
}

func newEnv(t testing.TB) *env {
	t.Helper()
	pool, dsn := testenv.Pool(t)
	url := testenv.NATS(t)
	log := testLogger(t)
	nc, err := bus.Connect(url, "coordinator-test", log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := bus.Ensure(ctx, nc, bus.Limits{ReadyMaxBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return &env{pool: pool, dsn: dsn, bus: b}
}

func (e *env) exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	if _, err := e.pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() && os.Getenv("PGTRAIN_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// fakeClock lets lease tests expire leases without waiting.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// running is a coordinator serving on a free port, with a client pointed at it.
type running struct {
	c      *Coordinator
	cl     *client.Client
	clock  *fakeClock
	cancel context.CancelFunc
	done   chan error
}

// start runs a coordinator on the env's database (source "") and bus until stop or the
// end of the test.
func start(t testing.TB, e *env, cfg Config) *running {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	c, err := New(context.Background(), cfg, map[string]*pgxpool.Pool{"": e.pool}, e.bus, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	clk := &fakeClock{t: time.Now()}
	c.now = clk.now
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{c: c, clock: clk, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx) }()
	select {
	case <-c.Ready():
	case err := <-r.done:
		t.Fatalf("coordinator stopped before listening: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("coordinator did not start listening")
	}
	r.cl = client.New("http://"+c.Addr(), testLogger(t))
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels Run and checks that it returns nil.
func (r *running) stop(t testing.TB) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run returned %v, want nil on a clean shutdown", err)
		}
	case <-time.After(20 * time.Second):
		t.Error("Run did not return after cancel")
	}
}

func apiErr(t *testing.T, err error) *client.APIError {
	t.Helper()
	var ae *client.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v (%T), want *client.APIError", err, err)
	}
	return ae
}

// signalHandler is a slog handler that closes a channel at the first record with a message.
type signalHandler struct {
	msg  string
	once *sync.Once
	ch   chan struct{}
}

func (h signalHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h signalHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.once.Do(func() { close(h.ch) })
	}
	return nil
}
func (h signalHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h signalHandler) WithGroup(string) slog.Handler      { return h }
