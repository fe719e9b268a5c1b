package coordinator

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/internal/pgutil"
)

// A route called with the wrong method is a 405 naming the allowed ones, in the API's JSON
// error form; an unknown path stays a 404.
func TestWrongMethodIs405(t *testing.T) {
	e := newEnv(t)
	c, err := New(t.Context(), Config{}, map[string]*pgxpool.Pool{"": e.pool}, e.bus, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	srv := newHTTPTestServer(t, c)
	tests := []struct {
		method, path string
		want         int
		allow        string
	}{
		{"GET", "/v1/leases", http.StatusMethodNotAllowed, "POST"},
		{"PUT", "/v1/jobs/x", http.StatusMethodNotAllowed, "DELETE, GET, HEAD"},
		{"GET", "/v1/jobs/x/cancel", http.StatusMethodNotAllowed, "POST"},
		{"DELETE", "/v1/openapi.json", http.StatusMethodNotAllowed, "GET, HEAD"},
		{"POST", "/healthz", http.StatusMethodNotAllowed, "GET, HEAD"},
		{"GET", "/v1/nothing", http.StatusNotFound, ""},
		{"GET", "/healthz", http.StatusOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			resp, err := http.DefaultClient.Do(mustRequest(t, tt.method, srv+tt.path, nil))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.want, body)
			}
			if got := resp.Header.Get("Allow"); got != tt.allow {
				t.Fatalf("Allow %q, want %q", got, tt.allow)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q: %s", ct, body)
			}
		})
	}
}

// A client that sends its request a byte at a time is cut off after ReadTimeout instead of
// holding the connection for as long as it likes.
func TestSlowRequestIsCutOff(t *testing.T) {
	e := newEnv(t)
	r := start(t, e, Config{ReadTimeout: 500 * time.Millisecond})
	conn, err := net.Dial("tcp", r.c.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		_, _ = io.Copy(io.Discard, conn) // returns once the server closes the connection
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-closed:
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("closed after %s", d)
			}
			return
		case <-tick.C:
			if time.Since(start) > 10*time.Second {
				t.Fatal("a request trickled in for 10s and the connection is still open")
			}
			_, _ = conn.Write([]byte("x"))
		}
	}
}

// /readyz asks whether PostgreSQL answers, not whether the pool has a free connection: with
// every pooled connection held by jobs it still says ready.
func TestReadyWhileThePoolIsBusy(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	pool, err := pgutil.NewPool(ctx, e.dsn, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	c, err := New(t.Context(), Config{}, map[string]*pgxpool.Pool{"": pool}, e.bus, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	srv := newHTTPTestServer(t, c)
	t.Cleanup(func() { c.close(ctx) })
	for range 2 {
		conn, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(conn.Release)
	}
	for i := range 3 {
		if code := doJSON(t, mustRequest(t, "GET", srv+"/readyz", nil), nil); code != 200 {
			t.Fatalf("probe %d with every pooled connection taken: %d, want 200", i, code)
		}
	}
}
