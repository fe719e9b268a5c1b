package metrics_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/internal/health"
	"pgtrain/internal/metrics"
	"pgtrain/internal/metrics/metricstest"
	"pgtrain/internal/testenv"
)

// A registry with the pool of a real PostgreSQL, served by the probe listener as a worker
// serves it: the pool's use shows, the runtime collectors are there, promtool accepts it.
func TestRegistryServedOnTheHealthListener(t *testing.T) {
	pool, _ := testenv.Pool(t)
	for range 3 {
		if err := pool.Ping(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	reg := metrics.NewRegistry()
	reg.MustRegister(metrics.NewPoolCollector("fetcher", map[string]*pgxpool.Pool{"": pool, "other": pool}))
	s, err := health.Start("127.0.0.1:0", nil, nil, nil, health.WithMetrics(metrics.Handler(reg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })

	f := metricstest.Scrape(t, "http://"+s.Addr()+"/metrics", "")
	st := pool.Stat()
	for _, source := range []string{metrics.DefaultSource, "other"} {
		labels := map[string]string{"role": "fetcher", "source": source}
		f.WantAbove(t, "pgtrain_pgxpool_acquires_total", labels, 2) // the pings, at least
		f.Want(t, "pgtrain_pgxpool_max_connections", labels, float64(st.MaxConns()))
		f.WantAbove(t, "pgtrain_pgxpool_total_connections", labels, 0)
	}
	for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_start_time_seconds"} {
		f.WantAbove(t, name, nil, 0)
	}
}

// Without WithMetrics a worker's probe listener has no /metrics.
func TestHealthWithoutMetrics(t *testing.T) {
	s, err := health.Start("127.0.0.1:0", nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	resp, err := http.Get("http://" + s.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /metrics = %d, want 404", resp.StatusCode)
	}
}
