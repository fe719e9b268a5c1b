package security

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"pgtrain/internal/demo"
	"pgtrain/internal/testenv"
	"pgtrain/messages"
)

// Forged reports on a live job, and a flood of snapshot jobs, against a coordinator with no
// workers (on its own bus prefix, so the attacked job stays still): each is refused, the
// job is untouched, PostgreSQL still takes clients and the coordinator stays up.
func TestForgedReportsAndSnapshotFlood(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	c := &cluster{dir: dir, url: "http://" + addr, tokens: testenv.TokenFiles(t, dir)}
	c.coordinator = &proc{name: "coordinator", logPath: filepath.Join(dir, "coordinator.log"),
		args: []string{"coordinator", "--listen", addr, "--auth-token-file", c.tokens.Auth, "--max-snapshot-jobs", "2"},
		env:  []string{"PGTRAIN_LOG_LEVEL=debug", "PGTRAIN_NATS_URL=" + natsS.URL, "PGTRAIN_DSN=" + pg.DSN, "PGTRAIN_NATS_PREFIX=owner"}}
	t.Cleanup(func() {
		if t.Failed() {
			c.printLogs(t)
		}
		c.stop()
	})
	if err := c.coordinator.start(); err != nil {
		t.Fatal(err)
	}
	if err := c.waitHealthy(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	c.pid = c.coordinator.cmd.Process.Pid
	call := func(cred credential, method, path string, body any, out any) int {
		t.Helper()
		var b []byte
		if body != nil {
			var err error
			if b, err = json.Marshal(body); err != nil {
				t.Fatal(err)
			}
		}
		code, resp, err := c.send(method, path, c.authorization(cred), b)
		if err != nil {
			t.Fatal(err)
		}
		if out != nil && code < 300 {
			if err := json.Unmarshal(resp, out); err != nil {
				t.Fatalf("%s %s: %d %s", method, path, code, resp)
			}
		}
		return code
	}
	var job messages.JobStatus
	if code := call(userToken, "POST", "/v1/jobs", json.RawMessage(demo.Spec(1)), &job); code != http.StatusCreated {
		t.Fatalf("submit: %d", code)
	}
	var l messages.Lease
	if code := call(workerToken, "POST", "/v1/leases", messages.LeaseRequest{WorkerID: "fetcher-1"}, &l); code != http.StatusOK {
		t.Fatalf("lease: %d", code)
	}
	jobPath := "/v1/jobs/" + job.ID
	for _, a := range []struct {
		name string
		path string
		body any
		want int
	}{
		{"another worker completes the lease", "/v1/leases/" + l.ID, messages.LeaseProgress{WorkerID: "evil", NextPage: 9, Done: true}, 409},
		{"the lease completed without a worker", "/v1/leases/" + l.ID, map[string]any{"done": true}, 400},
		{"a trainer that never claimed finishes the job", jobPath + "/progress",
			map[string]any{"trainer_id": "evil", "epoch": 1, "done": true, "model_path": "/etc/shadow"}, 409},
		{"a stranger fails the job", jobPath + "/fail", messages.FailRequest{Error: "evil", TrainerID: "evil"}, 409},
		{"a worker fails the job with a lease it does not hold", jobPath + "/fail", messages.FailRequest{Error: "evil", WorkerID: "evil", LeaseID: l.ID}, 409},
	} {
		if code := call(workerToken, "POST", a.path, a.body, nil); code != a.want {
			t.Errorf("%s: %d, want %d", a.name, code, a.want)
		}
		c.checkUp(t)
	}
	var st messages.JobStatus
	if code := call(userToken, "GET", jobPath, nil, &st); code != http.StatusOK || st.State != messages.JobRunning ||
		st.Fetch.Done != 0 || st.ModelPath != "" {
		t.Fatalf("the job after the forged reports: %d %+v", code, st)
	}

	// Snapshot jobs: two hold a connection each, the third is told to come back later.
	var spec map[string]any
	if err := json.Unmarshal(demo.Spec(1), &spec); err != nil {
		t.Fatal(err)
	}
	spec["consistency"] = "snapshot"
	for i, want := range []int{201, 201, 429} {
		if code := call(userToken, "POST", "/v1/jobs", spec, nil); code != want {
			t.Fatalf("snapshot job %d: %d, want %d", i+1, code, want)
		}
		c.checkUp(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.DSN)
	if err != nil {
		t.Fatalf("PostgreSQL refused another client: %v", err)
	}
	defer conn.Close(ctx)
	var idle int
	if err := conn.QueryRow(ctx, "select count(*) from pg_stat_activity where state = 'idle in transaction'").Scan(&idle); err != nil || idle != 2 {
		t.Fatalf("%d sessions idle in a transaction (%v), want the 2 snapshots", idle, err)
	}
}
