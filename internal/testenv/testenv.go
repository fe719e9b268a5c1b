// Package testenv gives tests real servers: a throwaway PostgreSQL database and an embedded
// JetStream server, each cleaned up when the test ends. PGTRAIN_TEST_DSN and
// PGTRAIN_TEST_NATS_URL point the tests at external servers instead (a fresh database is
// created in the external PostgreSQL for each call).
package testenv

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/internal/devenv"
	"pgtrain/internal/pgutil"
)

var dbSeq atomic.Int64

// Postgres returns the DSN of an empty database that lives as long as the test.
func Postgres(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	base := os.Getenv("PGTRAIN_TEST_DSN")
	if base == "" {
		pg, err := devenv.StartPostgres(ctx, devenv.PostgresOptions{})
		if err != nil {
			t.Fatalf("starting a throwaway PostgreSQL: %v", err)
		}
		t.Cleanup(pg.Stop)
		return pg.DSN
	}
	name := fmt.Sprintf("pgtrain_test_%d_%d", os.Getpid(), dbSeq.Add(1))
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connecting to PGTRAIN_TEST_DSN %s: %v", pgutil.Redact(base), err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "create database "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("creating test database: %v", err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(ctx, base)
		if err == nil {
			c.Exec(ctx, "drop database if exists "+pgx.Identifier{name}.Sanitize()+" with (force)")
			c.Close(ctx)
		}
	})
	return replaceDatabase(base, name)
}

// replaceDatabase points a URL-form DSN at another database.
func replaceDatabase(dsn, db string) string {
	if strings.Contains(dsn, "://") {
		rest := dsn[strings.Index(dsn, "://")+3:]
		head := dsn[:len(dsn)-len(rest)]
		q := ""
		if i := strings.IndexByte(rest, '?'); i >= 0 {
			rest, q = rest[:i], rest[i:]
		}
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			rest = rest[:i]
		}
		return head + rest + "/" + db + q
	}
	return dsn + " dbname=" + db
}

// Pool returns a pool on a fresh database (see Postgres).
func Pool(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	dsn := Postgres(t)
	pool, err := pgutil.NewPool(context.Background(), dsn, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool, dsn
}

// NATS returns the URL of a JetStream server that lives as long as the test. With
// PGTRAIN_TEST_NATS_URL set, tests share that server (and its streams).
func NATS(t testing.TB) string {
	t.Helper()
	if url := os.Getenv("PGTRAIN_TEST_NATS_URL"); url != "" {
		return url
	}
	n, err := devenv.StartNATS(devenv.NATSOptions{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatalf("starting an embedded nats-server: %v", err)
	}
	t.Cleanup(n.Stop)
	return n.URL
}

// Eventually waits for cond to hold, polling until the deadline; tests use it instead of
// sleeping a fixed time.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Servers is a throwaway PostgreSQL server and an embedded JetStream server for code that
// has no testing.TB: the Example functions, which run against real servers like the tests.
type Servers struct {
	DSN     string
	NATSURL string
	pg      *devenv.Postgres
	nats    *devenv.NATS
}

// StartServers starts both servers; Stop removes them and their files.
func StartServers(ctx context.Context) (*Servers, error) {
	pg, err := devenv.StartPostgres(ctx, devenv.PostgresOptions{})
	if err != nil {
		return nil, fmt.Errorf("starting a throwaway PostgreSQL: %w", err)
	}
	n, err := devenv.StartNATS(devenv.NATSOptions{})
	if err != nil {
		pg.Stop()
		return nil, fmt.Errorf("starting an embedded nats-server: %w", err)
	}
	return &Servers{DSN: pg.DSN, NATSURL: n.URL, pg: pg, nats: n}, nil
}

// Stop stops both servers.
func (s *Servers) Stop() {
	s.nats.Stop()
	s.pg.Stop()
}
