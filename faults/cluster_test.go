package faults

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"pgtrain/coordinator/client"
	"pgtrain/internal/testenv"
	"pgtrain/messages"
)

// Cluster shape and timings. The lease TTL and the RAW ack wait are short so that a dead
// holder's work is taken over within seconds; every process gets the same values.
const (
	numFetchers      = 3
	numPreprocessors = 2
	leaseTTL         = 2 * time.Second
	rawAckWait       = time.Second
	window           = 4
	// READY limits: replayMaxBytes holds the whole table (later epochs replay READY);
	// rereadMaxBytes does not, so every epoch reads PostgreSQL again.
	replayMaxBytes = 256 << 20
	rereadMaxBytes = 6 << 20
)

// clusterOptions changes one scenario's cluster.
type clusterOptions struct {
	readyMaxBytes int64
	// fetcherEnv and preprocEnv add environment variables to the first start of worker i.
	fetcherEnv  map[int][]string
	preprocEnv  map[int][]string
	trainerEnv  []string
	trainerArgs []string
	fetcherArgs []string
	// scorers run (scorer-1, ...) besides the other roles; scorerEnv adds environment
	// variables to the first start of scorer i.
	scorers   int
	scorerEnv map[int][]string
	// natsNodes > 1 runs that many `pgtrain nats` processes as one JetStream cluster;
	// every role is given all their URLs and keeps that many replicas of each stream.
	natsNodes int
}

// cluster is every pgtrain role as its own OS process on loopback, plus the shared
// PostgreSQL server: a nats-server (`pgtrain nats`, or several as one JetStream cluster),
// the coordinator, the fetchers, the preprocessors and one trainer.
type cluster struct {
	t        *testing.T
	dir      string
	env      []string
	natsURL  string
	coordURL string
	tokens   testenv.Tokens
	client   *client.Client

	nats          *proc   // the first (or only) node
	natsNodes     []*proc // every node, named by its JetStream server name
	natsToken     string
	coordinator   *proc
	fetchers      []*proc
	preprocessors []*proc
	trainer       *proc
	scorers       []*proc
}

// all lists the processes in start order.
func (c *cluster) all() []*proc {
	ps := append(slices.Clone(c.natsNodes), c.coordinator)
	ps = append(ps, c.fetchers...)
	ps = append(ps, c.preprocessors...)
	ps = append(ps, c.scorers...)
	return append(ps, c.trainer)
}

// roles are the processes of pgtrain's roles: all but the nats-servers.
func (c *cluster) roles() []*proc { return c.all()[len(c.natsNodes):] }

// workers are the roles but the coordinator.
func (c *cluster) workers() []*proc { return c.roles()[1:] }

func startCluster(t *testing.T, o clusterOptions) *cluster {
	t.Helper()
	dir := t.TempDir()
	nodes := max(o.natsNodes, 1)
	natsPorts := make([]int, nodes)
	natsURLs := make([]string, nodes)
	for i := range nodes {
		natsPorts[i] = freePort(t)
		natsURLs[i] = fmt.Sprintf("nats://127.0.0.1:%d", natsPorts[i])
	}
	coordPort := freePort(t)
	c := &cluster{
		t:         t,
		dir:       dir,
		natsURL:   strings.Join(natsURLs, ","),
		coordURL:  fmt.Sprintf("http://127.0.0.1:%d", coordPort),
		tokens:    testenv.TokenFiles(t, dir),
		natsToken: "faults-nats-token",
	}
	// The bus requires a token, as a deployment's would: the nats-server restart scenario
	// then also proves the roles reconnect with it.
	tokenFile := filepath.Join(dir, "nats-token")
	if err := os.WriteFile(tokenFile, []byte(c.natsToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.env = []string{
		"PGTRAIN_LOG_FORMAT=json",
		"PGTRAIN_NATS_TOKEN_FILE=" + tokenFile,
		"PGTRAIN_NATS_URL=" + c.natsURL,
		"PGTRAIN_COORDINATOR=" + c.coordURL,
		// Authentication is on, as in production: every role holds the worker token.
		"PGTRAIN_COORDINATOR_TOKEN_FILE=" + c.tokens.Worker,
		"PGTRAIN_DSN=" + pg.DSN,
		"PGTRAIN_READY_MAX_BYTES=" + strconv.FormatInt(o.readyMaxBytes, 10),
		"PGTRAIN_RAW_ACK_WAIT=" + rawAckWait.String(),
		"PGTRAIN_FAULT=", // never inherited from the environment of the test itself
	}
	if nodes > 1 {
		c.env = append(c.env, "PGTRAIN_STREAM_REPLICAS="+strconv.Itoa(nodes))
	}
	c.client = client.New(c.coordURL, nil, client.WithToken(c.tokens.UserSecret))
	t.Cleanup(func() { c.stop() })

	mk := func(name string, args ...string) *proc {
		return &proc{name: name, args: args, logPath: filepath.Join(dir, name+".log")}
	}
	if nodes == 1 {
		c.natsNodes = []*proc{mk("nats", "nats", "--store-dir", filepath.Join(dir, "nats"), "--port", strconv.Itoa(natsPorts[0]),
			"--auth-token-file", tokenFile)}
	} else {
		routes := make([]string, nodes)
		clusterPorts := make([]int, nodes)
		for i := range nodes {
			clusterPorts[i] = freePort(t)
			routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", clusterPorts[i])
		}
		// Every node gets the same routes, its own among them, as a deployment's would.
		for i := range nodes {
			name := fmt.Sprintf("nats-%d", i+1)
			c.natsNodes = append(c.natsNodes, mk(name, "nats", "--store-dir", filepath.Join(dir, name), "--port", strconv.Itoa(natsPorts[i]),
				"--auth-token-file", tokenFile, "--server-name", name, "--cluster-name", "faults",
				"--cluster-listen", fmt.Sprintf("127.0.0.1:%d", clusterPorts[i]), "--routes", strings.Join(routes, ",")))
		}
	}
	c.nats = c.natsNodes[0]
	c.coordinator = mk("coordinator", "coordinator", "--listen", fmt.Sprintf("127.0.0.1:%d", coordPort),
		"--lease-ttl", leaseTTL.String(), "--window", strconv.Itoa(window), "--auth-token-file", c.tokens.Auth)
	for i := range numFetchers {
		p := mk(fmt.Sprintf("fetcher-%d", i+1), append([]string{"fetcher", "--id", fmt.Sprintf("fetcher-%d", i+1)}, o.fetcherArgs...)...)
		c.fetchers = append(c.fetchers, withHealth(t, p))
	}
	for i := range numPreprocessors {
		p := mk(fmt.Sprintf("preprocessor-%d", i+1), "preprocessor")
		c.preprocessors = append(c.preprocessors, withHealth(t, p))
	}
	for i := range o.scorers {
		// A dead scorer's batches go to another after the ack wait: short, as the RAW one.
		p := mk(fmt.Sprintf("scorer-%d", i+1), "scorer", "--id", fmt.Sprintf("scorer-%d", i+1), "--ack-wait", (2 * rawAckWait).String())
		c.scorers = append(c.scorers, withHealth(t, p))
	}
	c.trainer = withHealth(t, mk("trainer", append([]string{"trainer", "--id", "trainer-1",
		"--out-dir", filepath.Join(dir, "models")}, o.trainerArgs...)...))

	for _, p := range c.natsNodes {
		c.must(p.start(c.env))
	}
	for i, p := range c.natsNodes {
		c.must(waitTCP(p, fmt.Sprintf("127.0.0.1:%d", natsPorts[i]), 20*time.Second))
	}
	c.must(c.coordinator.start(c.env))
	c.must(c.waitCoordinator(30 * time.Second))
	c.must(c.checkAuthOn())
	for i, p := range c.fetchers {
		c.must(p.start(c.env, o.fetcherEnv[i]...))
	}
	for i, p := range c.preprocessors {
		c.must(p.start(c.env, o.preprocEnv[i]...))
	}
	for i, p := range c.scorers {
		c.must(p.start(c.env, o.scorerEnv[i]...))
	}
	c.must(c.trainer.start(c.env, o.trainerEnv...))
	for _, p := range c.workers() {
		c.must(p.ready(30 * time.Second))
	}
	return c
}

func withHealth(t *testing.T, p *proc) *proc {
	p.health = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p.args = append(p.args, "--health-listen", p.health)
	return p
}

func (c *cluster) must(err error) {
	c.t.Helper()
	if err != nil {
		c.t.Fatal(err)
	}
}

// waitTCP waits until addr accepts connections (the nats-server has no probe listener).
func waitTCP(p *proc, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-p.exited():
			return fmt.Errorf("%s exited: %s", p.name, p.exitState())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening on %s after %s: %v", p.name, addr, timeout, err)
		}
		time.Sleep(50 * time.Millisecond) // polling interval of a condition with a deadline
	}
}

// waitCoordinator waits until the coordinator's /readyz says NATS and PostgreSQL answer.
func (c *cluster) waitCoordinator(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := c.client.Healthy(ctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-c.coordinator.exited():
			return fmt.Errorf("coordinator exited: %s", c.coordinator.exitState())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("coordinator not ready after %s: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond) // polling interval of a condition with a deadline
	}
}

// checkAuthOn makes sure the scenario runs with authentication on: a request without a
// token is refused.
func (c *cluster) checkAuthOn() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := client.New(c.coordURL, nil).Jobs(ctx)
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
		return fmt.Errorf("GET /v1/jobs without a token: %v, want 401", err)
	}
	return nil
}

// restart starts a process that has exited again, with its original flags and no fault.
func (c *cluster) restart(p *proc) error {
	if err := p.start(c.env); err != nil {
		return err
	}
	switch {
	case p == c.coordinator:
		return c.waitCoordinator(30 * time.Second)
	case p.health != "":
		return p.ready(30 * time.Second)
	}
	return nil
}

// stop ends every process: the workers are SIGKILLed (the scenario is over; only the
// processes' own state on disk matters) and the logs of a failed test are printed.
func (c *cluster) stop() {
	ps := c.all()
	for i := len(ps) - 1; i >= 0; i-- { // the nats-server last, so nobody logs its absence
		if ps[i] != nil && ps[i].running() {
			_ = ps[i].kill()
		}
	}
	if keep := os.Getenv("PGTRAIN_FAULTS_LOGS"); keep != "" {
		// Keep every process's log for reading after the run.
		dst := filepath.Join(keep, strings.ReplaceAll(c.t.Name(), "/", "_"))
		if err := os.MkdirAll(dst, 0o755); err == nil {
			for _, p := range ps {
				if b, err := os.ReadFile(p.logPath); err == nil {
					_ = os.WriteFile(filepath.Join(dst, filepath.Base(p.logPath)), b, 0o644)
				}
			}
		}
	}
	if c.t.Failed() {
		for _, p := range c.all() {
			if p != nil {
				c.t.Logf("---- last lines of %s (%s) ----\n%s", p.name, p.logPath, p.tail(25))
			}
		}
	}
}

// status reads the job's status, riding out a coordinator that is restarting.
func (c *cluster) status(id string) (*messages.JobStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return c.client.Job(ctx, id)
}

// bus reads the streams' state through the coordinator.
func (c *cluster) bus() (*messages.BusStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return c.client.Bus(ctx)
}

// countLogs counts the JSON log records of the given processes whose message contains msg.
func countLogs(ps []*proc, msg string) int {
	n := 0
	for _, p := range ps {
		n += len(p.logLines(msg))
	}
	return n
}

// describeExit says how a process ended, for messages.
func describeExit(p *proc) string {
	st := p.exitState()
	if st == nil {
		return "running"
	}
	return strings.TrimSpace(st.String())
}
