package main

// Process-level tests of how pgtrain fails: real processes of the binary against real
// PostgreSQL and NATS servers, asserting on exit status and stderr. Deadlines are generous
// (the machine may be loaded); what they check is a condition (no retry, the reason said),
// never a duration.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"pgtrain/internal/devenv"
	"pgtrain/internal/testenv"
	"pgtrain/messages"
)

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// pgtrainBinary builds bin/pgtrain once for the tests that run it.
func pgtrainBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "pgtrain-cmd-test-"); binErr == nil {
			binPath, binErr = testenv.BuildBinary(binDir)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// processDeadline bounds every process a test runs: far above what any of them needs.
const processDeadline = 2 * time.Minute

// result is how a process ended.
type result struct {
	code           int
	stdout, stderr string
}

// runPgtrain runs the binary with args (and env on top of an environment without PGTRAIN_*
// variables) until it exits; a process still running at the deadline fails the test.
func runPgtrain(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), processDeadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, pgtrainBinary(t), args...)
	cmd.Env = append(cleanEnv(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("pgtrain %s still running after %s; stderr:\n%s", strings.Join(args, " "), processDeadline, stderr.String())
	}
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		r.code = exitErr.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PGTRAIN_") {
			env = append(env, kv)
		}
	}
	return env
}

// closedPort is a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// unknownHost is a name that never resolves (RFC 2606); the tests that use it skip where
// the resolver cannot say so (no DNS at all answers a timeout, which is not permanent).
func unknownHost(t *testing.T) string {
	t.Helper()
	const host = "no-such-host.invalid"
	_, err := net.LookupHost(host)
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Skipf("the resolver does not answer NXDOMAIN for %s here: %v", host, err)
	}
	return host
}

func wantContains(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s does not contain %q:\n%s", what, sub, s)
		}
	}
}

func wantNotContains(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			t.Errorf("%s contains %q:\n%s", what, sub, s)
		}
	}
}

func TestUsageErrorsExitTwo(t *testing.T) {
	spec := filepath.Join(t.TempDir(), "spec.json")
	if err := os.WriteFile(spec, []byte(`{}`), 0o600); err != nil {
		t.Fatal(err)
	}
	coord := fmt.Sprintf("http://127.0.0.1:%d", closedPort(t))
	tests := []struct {
		name     string
		env      []string
		args     []string
		wantCode int
		want     string
	}{
		{name: "unknown command", args: []string{"nosuch"}, wantCode: 2, want: `unknown command "nosuch"`},
		{name: "bad flag", args: []string{"submit", "--bogus"}, wantCode: 2, want: "flag provided but not defined: -bogus"},
		{name: "missing argument", args: []string{"submit"}, wantCode: 2, want: "want exactly one spec file"},
		{name: "extra argument", args: []string{"status", "a", "b"}, wantCode: 2, want: "want at most one job id"},
		{name: "stray argument to a role", args: []string{"coordinator", "stray"}, wantCode: 2, want: `unexpected argument "stray"`},
		{name: "bad flag value", args: []string{"fetcher", "--startup-timeout", "soon"}, wantCode: 2, want: "--startup-timeout"},
		{name: "out of bounds startup timeout", args: []string{"trainer", "--startup-timeout", "0s"}, wantCode: 2, want: "want more than 0"},
		{name: "bad environment value", env: []string{"PGTRAIN_STARTUP_TIMEOUT=-1s"}, args: []string{"preprocessor"}, wantCode: 2, want: "$PGTRAIN_STARTUP_TIMEOUT"},
		{name: "missing required flag", args: []string{"demo-data"}, wantCode: 2, want: "--dsn"},
		{name: "cancel without a job", args: []string{"cancel"}, wantCode: 2, want: "want exactly one job id"},
		{name: "models with a bad verb", args: []string{"models", "push", "a", "b"}, wantCode: 2, want: "pull ID DIR"},
		{name: "predict without its model", args: []string{"predict", "--table", "t", "--out", "o"}, wantCode: 2, want: "--model is required"},
		{name: "scorer with a stray argument", args: []string{"scorer", "stray"}, wantCode: 2, want: `unexpected argument "stray"`},
		{name: "a runtime failure of predict stays 1", args: []string{"predict", "--coordinator", coord, "--model", "m", "--table", "t", "--out", "o"}, wantCode: 1, want: "nothing listens at " + coord},
		{name: "a runtime failure stays 1", args: []string{"submit", "--coordinator", coord, spec}, wantCode: 1, want: "nothing listens at " + coord},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runPgtrain(t, tt.env, tt.args...)
			if r.code != tt.wantCode {
				t.Errorf("exit status %d, want %d; stderr:\n%s", r.code, tt.wantCode, r.stderr)
			}
			wantContains(t, "stderr", r.stderr, tt.want)
		})
	}
}

func TestRolesWaitForNATSThenExitWithTheReason(t *testing.T) {
	dsn := testenv.Postgres(t)
	port := closedPort(t)
	url := fmt.Sprintf("nats://alice:s3cret@127.0.0.1:%d", port)
	for _, role := range []string{"coordinator", "fetcher", "preprocessor", "trainer"} {
		t.Run(role, func(t *testing.T) {
			args := []string{role, "--nats-url", url, "--startup-timeout", "2s", "--listen", "127.0.0.1:0"}
			switch role {
			case "coordinator":
				args = append(args, "--dsn", dsn)
			case "fetcher":
				args = []string{role, "--nats-url", url, "--startup-timeout", "2s", "--dsn", dsn}
			default:
				args = args[:5]
			}
			r := runPgtrain(t, nil, args...)
			if r.code == 0 {
				t.Fatalf("exit status 0 without NATS; stderr:\n%s", r.stderr)
			}
			redacted := fmt.Sprintf("nats://alice:xxxxx@127.0.0.1:%d", port)
			wantContains(t, "stderr", r.stderr,
				`msg="waiting for NATS at `+redacted+`"`,
				"NATS at "+redacted+" not reachable within 2s (--startup-timeout)",
				"connection refused")
			wantNotContains(t, "stderr", r.stderr, "s3cret")
		})
	}
	t.Run("unknown host is reported at once", func(t *testing.T) {
		host := unknownHost(t)
		r := runPgtrain(t, nil, "preprocessor", "--nats-url", "nats://"+host+":4222", "--startup-timeout", "5m")
		if r.code == 0 {
			t.Fatalf("exit status 0; stderr:\n%s", r.stderr)
		}
		wantContains(t, "stderr", r.stderr, "NATS at nats://"+host+":4222: ", "no such host")
		wantNotContains(t, "stderr", r.stderr, "not reachable within")
	})
}

// passwordPostgres starts a cluster where alice logs in with a password (postgres keeps
// trust, for the set-up), bob may not log in at all, and returns its port.
func passwordPostgres(t *testing.T) int {
	t.Helper()
	// The server may run as another user (as root): the hba file must be readable to it.
	dir, err := os.MkdirTemp("", "pgtrain-hba-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	hba := filepath.Join(dir, "pg_hba.conf")
	rules := "host all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
	if err := os.WriteFile(hba, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	pg, err := devenv.StartPostgres(context.Background(), devenv.PostgresOptions{Settings: map[string]string{"hba_file": hba}})
	if err != nil {
		t.Fatalf("starting PostgreSQL: %v", err)
	}
	t.Cleanup(pg.Stop)
	conn, err := pgx.Connect(context.Background(), pg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, sql := range []string{
		"create role alice login password 'right-pw'",
		"create role bob nologin password 'bobs-pw'",
	} {
		if _, err := conn.Exec(context.Background(), sql); err != nil {
			t.Fatal(err)
		}
	}
	return pg.Port
}

func TestPermanentPostgresErrorsAreReportedAtOnce(t *testing.T) {
	port := passwordPostgres(t)
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", closedPort(t)) // never reached: PostgreSQL is checked first
	tests := []struct {
		name        string
		dsn         string
		unknownHost bool // dsn has HOST where the unknown host goes
		want        string
		secret      string
	}{
		{name: "wrong password", dsn: fmt.Sprintf("postgres://alice:wrong-pw@127.0.0.1:%d/postgres?sslmode=disable", port), want: "SQLSTATE 28P01", secret: "wrong-pw"},
		{name: "role may not log in", dsn: fmt.Sprintf("postgres://bob:bobs-pw@127.0.0.1:%d/postgres?sslmode=disable", port), want: "SQLSTATE 28000", secret: "bobs-pw"},
		{name: "no such database", dsn: fmt.Sprintf("postgres://alice:right-pw@127.0.0.1:%d/nodb?sslmode=disable", port), want: "SQLSTATE 3D000", secret: "right-pw"},
		{name: "unknown host", dsn: "postgres://alice:right-pw@HOST:5432/postgres?sslmode=disable", unknownHost: true, want: "no such host", secret: "right-pw"},
	}
	for _, tt := range tests {
		for _, role := range []string{"coordinator", "fetcher"} {
			t.Run(tt.name+"/"+role, func(t *testing.T) {
				dsn := tt.dsn
				if tt.unknownHost {
					dsn = strings.Replace(dsn, "HOST", unknownHost(t), 1)
				}
				// A startup timeout far beyond the process deadline: only a fault reported
				// without waiting lets the process exit in time.
				pgtrainBinary(t) // built before the clock starts
				start := time.Now()
				r := runPgtrain(t, nil, role, "--dsn", dsn, "--nats-url", natsURL, "--startup-timeout", "1h")
				t.Logf("exited %d after %s", r.code, time.Since(start).Round(time.Millisecond))
				if r.code == 0 {
					t.Fatalf("exit status 0; stderr:\n%s", r.stderr)
				}
				wantContains(t, "stderr", r.stderr, tt.want, "PostgreSQL at postgres://", ":xxxxx@", "fix the DSN")
				wantNotContains(t, "stderr", r.stderr, tt.secret, "waiting for PostgreSQL")
			})
		}
	}
	t.Run("a server that is down is waited for", func(t *testing.T) {
		down := closedPort(t)
		r := runPgtrain(t, nil, "coordinator", "--dsn", fmt.Sprintf("postgres://alice:right-pw@127.0.0.1:%d/postgres?sslmode=disable", down),
			"--nats-url", natsURL, "--startup-timeout", "2s")
		if r.code == 0 {
			t.Fatalf("exit status 0; stderr:\n%s", r.stderr)
		}
		where := fmt.Sprintf("PostgreSQL at postgres://alice:xxxxx@127.0.0.1:%d/postgres?sslmode=disable", down)
		wantContains(t, "stderr", r.stderr, `msg="waiting for `+where+`"`, where+" not reachable within 2s (--startup-timeout)", "connection refused")
		wantNotContains(t, "stderr", r.stderr, "right-pw")
	})
	t.Run("a malformed DSN says why", func(t *testing.T) {
		r := runPgtrain(t, nil, "coordinator", "--dsn", "postgres://alice:se%zzkrit@127.0.0.1/db", "--nats-url", natsURL)
		if r.code != 1 {
			t.Fatalf("exit status %d, want 1; stderr:\n%s", r.code, r.stderr)
		}
		wantContains(t, "stderr", r.stderr, "invalid percent-encoded token in password")
		wantNotContains(t, "stderr", r.stderr, "zzkrit")
	})
}

func TestWorkersWaitForTheCoordinatorThenExitWithTheReason(t *testing.T) {
	dsn := testenv.Postgres(t)
	natsURL := testenv.NATS(t)
	port := closedPort(t)
	coord := fmt.Sprintf("http://127.0.0.1:%d", port)
	args := func(role, coordURL, timeout string) []string {
		a := []string{role, "--nats-url", natsURL, "--coordinator", coordURL, "--startup-timeout", timeout}
		if role == "fetcher" {
			a = append(a, "--dsn", dsn)
		}
		return a
	}
	for _, role := range []string{"fetcher", "preprocessor", "trainer"} {
		t.Run(role, func(t *testing.T) {
			r := runPgtrain(t, nil, args(role, coord, "2s")...)
			if r.code == 0 {
				t.Fatalf("exit status 0; stderr:\n%s", r.stderr)
			}
			wantContains(t, "stderr", r.stderr, `msg="waiting for the coordinator at `+coord+`"`,
				"the coordinator at "+coord+" not reachable within 2s (--startup-timeout)", "is the coordinator running")
			// The client's own attempts are debug lines, not ERRORs.
			wantNotContains(t, "stderr", r.stderr, "level=ERROR")
		})
	}
	t.Run("unknown host is reported at once", func(t *testing.T) {
		host := unknownHost(t)
		r := runPgtrain(t, nil, args("fetcher", "http://"+host+":8080", "1h")...)
		if r.code == 0 {
			t.Fatalf("exit status 0; stderr:\n%s", r.stderr)
		}
		wantContains(t, "stderr", r.stderr, `the coordinator's host "`+host+`" does not resolve (check --coordinator`)
		wantNotContains(t, "stderr", r.stderr, "waiting for the coordinator", "level=ERROR")
	})
}

func TestUpPrintsItsDSNAndMakesTheDataDir(t *testing.T) {
	if _, err := devenv.FindPostgresBin(); err != nil {
		t.Skip(err)
	}
	base, err := os.MkdirTemp("", "pgtrain-up-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(base, "new", "data")
	// A umask that would make the directories unreachable to a server running as another user.
	cmd := exec.Command("sh", "-c", `umask 077; exec "$0" "$@"`, pgtrainBinary(t), "up", "--data-dir", dataDir,
		"--listen", "127.0.0.1:0", "--out-dir", filepath.Join(base, "models"))
	cmd.Env = cleanEnv()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var out []string
	deadline := time.After(processDeadline)
	up := false
	for !up {
		select {
		case l, ok := <-lines:
			if !ok {
				_ = cmd.Wait()
				t.Fatalf("up exited before it was up:\n%s\nstderr:\n%s", strings.Join(out, "\n"), stderr.String())
			}
			out = append(out, l)
			up = strings.HasPrefix(l, "pgtrain is up")
		case <-deadline:
			_ = cmd.Process.Kill()
			t.Fatalf("up not up after %s:\n%s\nstderr:\n%s", processDeadline, strings.Join(out, "\n"), stderr.String())
		}
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	if err := cmd.Wait(); err != nil {
		t.Errorf("up after Ctrl-C: %v; stderr:\n%s", err, stderr.String())
	}
	wantContains(t, "stdout", strings.Join(out, "\n"), "PostgreSQL is up: postgres://postgres@127.0.0.1:", "(data in "+filepath.Join(dataDir, "postgres", "data")+")")
	for _, d := range []string{filepath.Join(base, "new"), dataDir} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o755 {
			t.Errorf("%s has mode %#o, want 0755", d, fi.Mode().Perm())
		}
	}
	if os.Geteuid() != 0 {
		return
	}
	t.Run("a directory the server cannot pass is named", func(t *testing.T) {
		closed := filepath.Join(base, "closed")
		if err := os.Mkdir(closed, 0o700); err != nil {
			t.Fatal(err)
		}
		r := runPgtrain(t, nil, "up", "--data-dir", filepath.Join(closed, "data"), "--listen", "127.0.0.1:0")
		if r.code != 1 {
			t.Fatalf("exit status %d, want 1; stderr:\n%s", r.code, r.stderr)
		}
		wantContains(t, "stderr", r.stderr, "--data-dir: the PostgreSQL server runs as uid", "cannot pass through "+closed+" (mode 0700): run chmod o+x "+closed)
	})
}

// syncBuffer is a buffer written by a process's output copier and read by the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A fetcher started before its coordinator waits for it, then works; the job is submitted
// as YAML whose label is y, a string in YAML 1.2.
func TestAFetcherStartedFirstWaitsThenReadsAYAMLJob(t *testing.T) {
	dsn := testenv.Postgres(t)
	natsURL := testenv.NATS(t)
	if r := runPgtrain(t, nil, "demo-data", "--dsn", dsn, "--rows", "2000"); r.code != 0 {
		t.Fatalf("demo-data: %d\n%s", r.code, r.stderr)
	}
	port := closedPort(t)
	coord := fmt.Sprintf("http://127.0.0.1:%d", port)
	fetcherErr := startPgtrainSync(t, "fetcher", "--dsn", dsn, "--nats-url", natsURL, "--coordinator", coord, "--startup-timeout", "5m")
	testenv.Eventually(t, processDeadline, "the fetcher to wait for the coordinator", func() bool {
		return strings.Contains(fetcherErr.String(), `msg="waiting for the coordinator at `+coord+`"`)
	})
	startPgtrainSync(t, "coordinator", "--dsn", dsn, "--nats-url", natsURL, "--listen", fmt.Sprintf("127.0.0.1:%d", port))
	spec := filepath.Join(t.TempDir(), "job.yaml")
	yamlSpec := `table: pgtrain_demo
key: id
features:
  - column: x1
    scale: standard
label: y
model:
  layers:
    - type: dense
      units: 1
loss: mse
epochs: 1
batch_size: 64
range_rows: 500
`
	if err := os.WriteFile(spec, []byte(yamlSpec), 0o600); err != nil {
		t.Fatal(err)
	}
	var r result
	testenv.Eventually(t, processDeadline, "the coordinator to take the job", func() bool {
		r = runPgtrain(t, nil, "submit", "--coordinator", coord, spec)
		return r.code == 0
	})
	wantContains(t, "submit's stdout", r.stdout, "submitted job pgtraindemo-")
	id := strings.Fields(strings.TrimPrefix(r.stdout, "submitted job "))[0]
	id = strings.TrimSuffix(id, ":")
	testenv.Eventually(t, processDeadline, "the fetcher to read a range", func() bool {
		s := runPgtrain(t, nil, "status", "--coordinator", coord, "--json", id)
		var st messages.JobStatus
		return s.code == 0 && json.Unmarshal([]byte(s.stdout), &st) == nil && st.Fetch.RowsRead > 0
	})
}

// startPgtrainSync is startPgtrain whose stderr may be read while the process writes it.
func startPgtrainSync(t *testing.T, args ...string) *syncBuffer {
	t.Helper()
	cmd := exec.Command(pgtrainBinary(t), args...)
	cmd.Env = cleanEnv()
	stderr := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = io.Discard, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return stderr
}
