package coordinator

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"pgtrain/internal/testenv"
	"pgtrain/messages"
)

// Snapshot jobs hold one pooled connection each, at most MaxSnapshotJobs at once: one more
// is a 429 to retry later, PostgreSQL still takes other clients, and a job that ends gives
// its session back.
func TestSnapshotJobsAreLimited(t *testing.T) {
	e := newEnv(t)
	irisTable(t, e)
	r := start(t, e, Config{MaxSnapshotJobs: 2})
	ctx := context.Background()
	spec := specJSON(t, func(m map[string]any) { m["consistency"] = "snapshot" })
	var ids []string
	for range 2 {
		st, err := r.cl.Submit(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, st.ID)
	}
	if n := snapshotSessions(t, e); n != 2 {
		t.Fatalf("%d sessions idle in a transaction, want the 2 snapshots", n)
	}
	resp, err := http.DefaultClient.Do(mustRequest(t, http.MethodPost, "http://"+r.c.Addr()+"/v1/jobs", spec))
	if err != nil {
		t.Fatal(err)
	}
	var er messages.ErrorResponse
	err = json.NewDecoder(resp.Body).Decode(&er)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || err != nil || er.Field != "consistency" ||
		!strings.Contains(er.Error, "--max-snapshot-jobs 2") || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third snapshot job: %d %+v (Retry-After %q), want 429 naming the limit", resp.StatusCode, er, resp.Header.Get("Retry-After"))
	}
	if n := snapshotSessions(t, e); n != 2 {
		t.Fatalf("%d sessions idle in a transaction after the refusal, want 2", n)
	}
	// Another client still gets in.
	conn, err := pgx.Connect(ctx, e.dsn)
	if err != nil {
		t.Fatalf("PostgreSQL refused another client: %v", err)
	}
	conn.Close(ctx)
	// A job that ends (here failed by its trainer) releases its snapshot session.
	if id, err := r.cl.ClaimJob(ctx, "t"); err != nil || id != ids[0] {
		t.Fatalf("claim: %q, %v", id, err)
	}
	if err := r.cl.FailJob(ctx, ids[0], messages.FailRequest{Error: "stop", TrainerID: "t"}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the ended job's snapshot session to go", func() bool {
		return snapshotSessions(t, e) == 1
	})
	if _, err := r.cl.Submit(ctx, spec); err != nil {
		t.Fatalf("a snapshot job after one ended: %v", err)
	}
}

// A snapshot lives at most SnapshotMaxAge: a job not read by then fails, saying so, and
// its session goes.
func TestSnapshotMaxAge(t *testing.T) {
	e := newEnv(t)
	irisTable(t, e)
	r := start(t, e, Config{SnapshotMaxAge: time.Second})
	ctx := context.Background()
	st, err := r.cl.Submit(ctx, specJSON(t, func(m map[string]any) { m["consistency"] = "snapshot" }))
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 15*time.Second, "the job to fail at the snapshot's max age", func() bool {
		got, err := r.cl.Job(ctx, st.ID)
		return err == nil && got.State == messages.JobFailed && strings.Contains(got.Error, "--snapshot-max-age")
	})
	testenv.Eventually(t, 10*time.Second, "the snapshot session to go", func() bool {
		return snapshotSessions(t, e) == 0
	})
}

func TestSnapshotConfig(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"defaults", Config{}, ""},
		{"max age too short", Config{SnapshotMaxAge: time.Millisecond}, "snapshot max age"},
		{"negative limit", Config{MaxSnapshotJobs: -1}, "max snapshot jobs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg.WithDefaults()
			err := cfg.Validate()
			if tc.wantErr == "" && (err != nil || cfg.SnapshotMaxAge != DefaultSnapshotMaxAge || cfg.MaxSnapshotJobs != DefaultMaxSnapshotJobs) ||
				tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("%+v: %v, want %q", cfg, err, tc.wantErr)
			}
		})
	}
}

// snapshotSessions counts the test database's sessions that idle in a transaction.
func snapshotSessions(t *testing.T, e *env) int {
	t.Helper()
	var n int
	err := e.pool.QueryRow(context.Background(), `select count(*) from pg_stat_activity
		where datname = current_database() and state = 'idle in transaction'`).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
