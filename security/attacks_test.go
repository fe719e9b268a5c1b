package security

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pgtrain/internal/demo"
	"pgtrain/messages"
)

// credential is what an attack sends in its Authorization header.
type credential int

const (
	noToken     credential = iota
	userToken              // scopes read and submit
	workerToken            // scope worker
	wrongToken             // well-formed, never issued
	userPrefix             // the user token less its last character
	basicAuth              // another scheme
	hugeToken              // 32 KiB of token
)

func (c *cluster) authorization(cred credential) string {
	switch cred {
	case userToken:
		return "Bearer " + c.tokens.UserSecret
	case workerToken:
		return "Bearer " + c.tokens.WorkerSecret
	case wrongToken:
		return "Bearer 0123456789abcdef0123456789abcdef0123456789abcdef"
	case userPrefix:
		return "Bearer " + c.tokens.UserSecret[:len(c.tokens.UserSecret)-1]
	case basicAuth:
		return "Basic dXNlcjpwYXNzd29yZA=="
	case hugeToken:
		return "Bearer " + strings.Repeat("A", 32<<10)
	}
	return ""
}

// attack is one hostile request, or a run function for anything more involved. The
// coordinator must answer want, with a JSON error body for a 4xx.
type attack struct {
	name         string
	method, path string
	cred         credential
	body         string
	want         int
	// field, when set, is the spec field the error must name.
	field string
	run   func(t *testing.T, c *cluster)
}

// A spec that would plan a real job: only the token decides.
var validSpec = string(demo.Spec(1))

// specWith is validSpec edited: a hostile spec sent with a valid user token.
func specWith(edit func(m map[string]any)) string {
	var m map[string]any
	if err := json.Unmarshal([]byte(validSpec), &m); err != nil {
		panic(err)
	}
	edit(m)
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// attacks are replayed in order against one coordinator. Add new cases here.
var attacks = []attack{
	// Without a token, or with a token that is not one: 401 on every route but the probes.
	{name: "no token lists jobs", method: "GET", path: "/v1/jobs", want: 401},
	{name: "no token submits a job", method: "POST", path: "/v1/jobs", body: validSpec, want: 401},
	{name: "no token reads a plan", method: "GET", path: "/v1/jobs/x/plan", want: 401},
	{name: "no token takes a lease", method: "POST", path: "/v1/leases", body: `{"worker_id":"evil"}`, want: 401},
	{name: "no token completes a lease", method: "POST", path: "/v1/leases/x", body: `{"done":true}`, want: 401},
	{name: "no token claims a job", method: "POST", path: "/v1/trainers/claim", body: `{"trainer_id":"evil"}`, want: 401},
	{name: "no token reports progress", method: "POST", path: "/v1/jobs/x/progress", body: `{}`, want: 401},
	{name: "no token fails a job", method: "POST", path: "/v1/jobs/x/fail", body: `{"error":"evil"}`, want: 401},
	{name: "no token reads the bus", method: "GET", path: "/v1/bus", want: 401},
	{name: "no token starts a prediction", method: "POST", path: "/v1/predictions", body: `{"model":"m","table":"t","output":"o"}`, want: 401},
	{name: "no token lists the scorers' jobs", method: "GET", path: "/v1/scorers/jobs", want: 401},
	{name: "no token reports a scored batch", method: "POST", path: "/v1/jobs/x/scored", body: `{}`, want: 401},
	{name: "no token probes an unknown route", method: "GET", path: "/v1/admin", want: 401},
	{name: "wrong token", method: "GET", path: "/v1/jobs", cred: wrongToken, want: 401},
	{name: "prefix of a valid token", method: "GET", path: "/v1/jobs", cred: userPrefix, want: 401},
	{name: "basic auth", method: "GET", path: "/v1/jobs", cred: basicAuth, want: 401},
	{name: "32 KiB token", method: "GET", path: "/v1/jobs", cred: hugeToken, want: 401},

	// A user token on the worker routes, a worker token on the user routes: 403.
	{name: "user takes a lease", method: "POST", path: "/v1/leases", cred: userToken, body: `{"worker_id":"evil"}`, want: 403},
	{name: "user completes a lease", method: "POST", path: "/v1/leases/x", cred: userToken, body: `{"done":true}`, want: 403},
	{name: "user claims a job", method: "POST", path: "/v1/trainers/claim", cred: userToken, body: `{"trainer_id":"evil"}`, want: 403},
	{name: "user reports progress", method: "POST", path: "/v1/jobs/x/progress", cred: userToken, body: `{}`, want: 403},
	{name: "user fails a job", method: "POST", path: "/v1/jobs/x/fail", cred: userToken, body: `{"error":"evil"}`, want: 403},
	{name: "worker submits a job", method: "POST", path: "/v1/jobs", cred: workerToken, body: validSpec, want: 403},
	{name: "worker starts a prediction", method: "POST", path: "/v1/predictions", cred: workerToken, body: `{"model":"m","table":"t","output":"o"}`, want: 403},
	{name: "user lists the scorers' jobs", method: "GET", path: "/v1/scorers/jobs", cred: userToken, want: 403},
	{name: "user reports a scored batch", method: "POST", path: "/v1/jobs/x/scored", cred: userToken, body: `{}`, want: 403},
	{name: "worker lists jobs", method: "GET", path: "/v1/jobs", cred: workerToken, want: 403},
	{name: "worker reads a plan", method: "GET", path: "/v1/jobs/x/plan", cred: workerToken, want: 403},
	// Job control is the submitters': a worker cannot cancel or delete a job.
	{name: "no token cancels a job", method: "POST", path: "/v1/jobs/x/cancel", want: 401},
	{name: "no token deletes a job", method: "DELETE", path: "/v1/jobs/x", want: 401},
	{name: "no token reads the API document", method: "GET", path: "/v1/openapi.json", want: 401},
	{name: "worker cancels a job", method: "POST", path: "/v1/jobs/x/cancel", cred: workerToken, want: 403},
	{name: "worker deletes a job", method: "DELETE", path: "/v1/jobs/x", cred: workerToken, want: 403},
	{name: "user deletes a job that is not there", method: "DELETE", path: "/v1/jobs/x", cred: userToken, want: 404},
	{name: "user lists a billion jobs at once", method: "GET", path: "/v1/jobs?limit=1000000000", cred: userToken, want: 400},
	{name: "user lists from a forged cursor", method: "GET", path: "/v1/jobs?cursor=" + strings.Repeat("QUFB", 1000), cred: userToken, want: 400},

	// A worker token alone does not make a report: it must name the lease's or job's owner.
	{name: "worker completes a lease without naming itself", method: "POST", path: "/v1/leases/x.0.0.1", cred: workerToken, body: `{"done":true,"next_page":9}`, want: 400},
	{name: "worker finishes a job without naming its trainer", method: "POST", path: "/v1/jobs/x/progress", cred: workerToken, body: `{"done":true,"model_path":"/etc/shadow"}`, want: 400},
	{name: "worker fails a job without naming itself", method: "POST", path: "/v1/jobs/x/fail", cred: workerToken, body: `{"error":"evil"}`, want: 400},
	{name: "worker reports a scored batch without naming itself", method: "POST", path: "/v1/jobs/x/scored", cred: workerToken, body: `{"batch":{"job_id":"x"}}`, want: 400},
	{name: "worker reports a scored batch of no job", method: "POST", path: "/v1/jobs/x/scored", cred: workerToken, body: `{"scorer_id":"evil","batch":{"job_id":"x"}}`, want: 404},

	// A prediction names its output table as plain identifiers: quoting tricks are refused
	// before anything is looked up.
	{name: "a prediction into a quoted name", method: "POST", path: "/v1/predictions", cred: userToken,
		body: `{"model":"m","table":"t","output":"o\"; drop table t; --"}`, want: 400, field: "output"},
	{name: "a prediction with an unknown model", method: "POST", path: "/v1/predictions", cred: userToken,
		body: `{"model":"nosuch","table":"pg_catalog.pg_authid","output":"o"}`, want: 400, field: "model"},

	// Finding 1: no job reads a system schema, whatever the name or the key.
	{name: "a job on pg_roles", method: "POST", path: "/v1/jobs", cred: userToken,
		body: specWith(func(m map[string]any) { m["table"], m["key"] = "pg_catalog.pg_roles", "oid" }), want: 400, field: "table"},
	{name: "a job on pg_stat_activity", method: "POST", path: "/v1/jobs", cred: userToken,
		body: specWith(func(m map[string]any) { m["table"], m["key"] = "pg_catalog.pg_stat_activity", "pid" }), want: 400, field: "table"},
	{name: "a job on information_schema", method: "POST", path: "/v1/jobs", cred: userToken,
		body: specWith(func(m map[string]any) { m["table"], m["key"] = "information_schema.columns", "ordinal_position" }), want: 400, field: "table"},

	// Finding 2: numbers that made the coordinator or the fetchers allocate without bound.
	{name: "a billion units", method: "POST", path: "/v1/jobs", cred: userToken,
		body: specWith(func(m map[string]any) {
			m["model"] = map[string]any{"layers": []any{map[string]any{"type": "dense", "units": 1_000_000_000}, map[string]any{"type": "dense", "units": 1}}}
		}), want: 400, field: "model"},
	{name: "fifty million epochs", method: "POST", path: "/v1/jobs", cred: userToken,
		body: specWith(func(m map[string]any) { m["epochs"] = 50000000 }), want: 400, field: "epochs"},
	{name: "three hundred thousand epochs", method: "POST", path: "/v1/jobs", cred: userToken,
		body: specWith(func(m map[string]any) { m["epochs"] = 300000 }), want: 400, field: "epochs"},
	{name: "a billion rows per page", method: "POST", path: "/v1/jobs", cred: userToken,
		body: specWith(func(m map[string]any) { m["page_rows"] = 1_000_000_000 }), want: 400, field: "page_rows"},
	{name: "a billion rows per batch", method: "POST", path: "/v1/jobs", cred: userToken,
		body: specWith(func(m map[string]any) { m["batch_size"] = 1_000_000_000 }), want: 400, field: "batch_size"},
	{name: "a vocabulary of a billion", method: "POST", path: "/v1/jobs", cred: userToken,
		body: specWith(func(m map[string]any) { m["features"].([]any)[5].(map[string]any)["vocab_size"] = 1_000_000_000 }), want: 400, field: "features[5].vocab_size"},

	// The probes stay open for orchestrators.
	{name: "healthz without a token", method: "GET", path: "/healthz", want: 200},
	{name: "readyz without a token", method: "GET", path: "/readyz", want: 200},

	{name: "plain HTTP on the TLS port", run: func(t *testing.T, c *cluster) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+strings.TrimPrefix(c.url, "https://")+"/v1/jobs", nil)
		req.Header.Set("Authorization", c.authorization(userToken))
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			return // refused outright is fine too
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("plain HTTP answered %d, want 400 (an HTTP request to an HTTPS server)", resp.StatusCode)
		}
	}},
}

func TestAttacks(t *testing.T) {
	c := startCluster(t)
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			if a.run != nil {
				a.run(t, c)
			} else {
				var body []byte
				if a.body != "" {
					body = []byte(a.body)
				}
				code, resp, err := c.send(a.method, a.path, c.authorization(a.cred), body)
				if err != nil {
					t.Fatal(err)
				}
				if code != a.want {
					t.Fatalf("%s %s: %d %s, want %d", a.method, a.path, code, resp, a.want)
				}
				if code >= 400 {
					var er messages.ErrorResponse
					if err := json.Unmarshal(resp, &er); err != nil || er.Error == "" {
						t.Fatalf("%s %s: %d with body %q, want a JSON error", a.method, a.path, code, resp)
					}
					if a.field != "" && er.Field != a.field {
						t.Fatalf("%s %s: %d on field %q (%s), want field %q", a.method, a.path, code, er.Field, er.Error, a.field)
					}
				}
			}
			c.checkUp(t)
		})
	}
	if t.Failed() {
		return
	}

	// After all that, a normal job runs to the end, submitted and followed by the CLI with
	// the user token over TLS.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	specPath := filepath.Join(c.dir, "spec.json")
	if err := os.WriteFile(specPath, demo.Spec(1), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(ctx, nil, "submit", "--wait", "--coordinator", c.url, "--coordinator-ca", c.caFile,
		"--coordinator-token-file", c.tokens.User, specPath)
	if err != nil {
		t.Fatalf("the job after the attacks: %v\n%s", err, out)
	}
	t.Logf("the job after the attacks:\n%s", out)
	c.checkUp(t)
	jobs, err := c.client(c.tokens.UserSecret).Jobs(ctx)
	if err != nil || len(jobs) != 1 || jobs[0].State != messages.JobDone {
		t.Fatalf("jobs after the run: %+v %v; want the one job done (the attacks created none)", jobs, err)
	}

	// Finding 1: the plan shows the table's values only to a token with the data scope,
	// which the user token lacks.
	plan, err := c.client(c.tokens.UserSecret).Plan(ctx, jobs[0].ID)
	if err != nil {
		t.Fatalf("the plan: %v", err)
	}
	if plan.Omitted == "" {
		t.Error("the plan for a token without the data scope does not say what it left out")
	}
	for _, col := range append(plan.Features, plan.Label) {
		if len(col.Vocabulary) > 0 || col.Stats != (messages.Stats{}) {
			t.Errorf("the plan for a token without the data scope shows column %q: %+v", col.Name, col)
		}
	}

	// No secret in any log or output.
	for _, p := range append(c.workers, c.coordinator) {
		log := p.log()
		for _, s := range []string{c.tokens.UserSecret, c.tokens.WorkerSecret} {
			if strings.Contains(log, s) {
				t.Errorf("%s logged a token", p.name)
			}
		}
	}
	if strings.Contains(out, c.tokens.UserSecret) {
		t.Error("pgtrain submit printed the token")
	}
}

// Without tokens the coordinator binds loopback only and says so; a non-loopback address
// is refused at start unless --insecure-no-auth.
func TestNoTokensMeansLoopbackOnly(t *testing.T) {
	dir := t.TempDir()
	env := []string{"PGTRAIN_DSN=" + pg.DSN, "PGTRAIN_NATS_URL=" + natsS.URL, "PGTRAIN_AUTH_TOKEN_FILE="}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := runCLI(ctx, env, "coordinator", "--listen", "0.0.0.0:0")
	if err == nil || !strings.Contains(out, "non-loopback") || !strings.Contains(out, "--insecure-no-auth") {
		t.Fatalf("coordinator on 0.0.0.0 without tokens: %v\n%s\nwant a refusal naming --insecure-no-auth", err, out)
	}

	for _, tc := range []struct {
		name string
		args []string
		log  string
	}{
		{"loopback", []string{"--listen", "127.0.0.1:0"}, "listens on loopback only"},
		{"insecure", []string{"--listen", "0.0.0.0:0", "--insecure-no-auth"}, "every route is open to anyone"},
	} {
		p := &proc{name: "coordinator-" + tc.name, args: append([]string{"coordinator"}, tc.args...), env: env,
			logPath: filepath.Join(dir, tc.name+".log")}
		if err := p.start(); err != nil {
			t.Fatal(err)
		}
		err := p.waitLog(tc.log, 30*time.Second)
		p.stop()
		if err != nil {
			t.Fatalf("%v\n%s", err, p.log())
		}
	}
}

// A worker whose token the coordinator refuses stops with an error that says so, instead
// of retrying a fault no retry can mend; a user's token (no worker scope) is refused too.
func TestWorkerWithARefusedTokenStops(t *testing.T) {
	c := startCluster(t)
	for _, tc := range []struct{ name, token string }{
		{"unknown token", "not-a-token-of-this-coordinator"},
		{"user token", c.tokens.UserSecret},
	} {
		for _, role := range [][]string{{"fetcher", "--id", "fetcher-x"}, {"trainer", "--id", "trainer-x", "--out-dir", t.TempDir()}} {
			t.Run(tc.name+"/"+role[0], func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				env := []string{"PGTRAIN_DSN=" + pg.DSN, "PGTRAIN_NATS_URL=" + natsS.URL, "PGTRAIN_COORDINATOR_TOKEN=" + tc.token}
				out, err := runCLI(ctx, env, append(role, "--coordinator", c.url, "--coordinator-ca", c.caFile)...)
				if ctx.Err() != nil {
					t.Fatalf("%s kept running with a refused token:\n%s", role[0], out)
				}
				if err == nil || !strings.Contains(out, "refused this worker's token") {
					t.Fatalf("%s with a refused token: %v\n%s\nwant an exit naming the refused token", role[0], err, out)
				}
				if strings.Contains(out, tc.token) {
					t.Errorf("%s printed the token", role[0])
				}
			})
		}
	}
	c.checkUp(t)
}
