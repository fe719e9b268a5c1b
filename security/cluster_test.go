package security

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"pgtrain/coordinator/client"
	"pgtrain/internal/testenv"
)

// proc is one process of the pgtrain binary; its output goes to a log file.
type proc struct {
	name    string
	args    []string
	env     []string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
}

func (p *proc) start() error {
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	p.cmd = exec.Command(binary, p.args...)
	p.cmd.Env = append(os.Environ(), p.env...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	// The process dies with the test binary, whatever way the test binary ends.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("starting %s: %w", p.name, err)
	}
	p.done = make(chan struct{})
	go func() {
		_ = p.cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return nil
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// wait waits for the process to exit by itself.
func (p *proc) wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%s still runs after %s", p.name, timeout)
	}
}

// stop asks the process to shut down (SIGTERM) and kills it if it does not within 10 s.
func (p *proc) stop() {
	if p.cmd == nil || !p.running() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if p.wait(10*time.Second) != nil {
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) log() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// waitLog waits until the process's log contains s.
func (p *proc) waitLog(s string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.log(), s) {
		if !p.running() {
			return fmt.Errorf("%s exited (%s) before logging %q", p.name, p.cmd.ProcessState, s)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not log %q within %s", p.name, s, timeout)
		}
		time.Sleep(50 * time.Millisecond) // polling interval of a condition with a deadline
	}
	return nil
}

// cluster is a coordinator with tokens and TLS on loopback, and one fetcher, one
// preprocessor and one trainer, each its own process.
type cluster struct {
	dir         string
	url         string // https://127.0.0.1:port
	tokens      testenv.Tokens
	caFile      string
	tls         *tls.Config
	coordinator *proc
	workers     []*proc
	pid         int // the coordinator's, checked after every attack
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	dir := t.TempDir()
	caPEM, certFile, keyFile := testenv.SelfSignedCert(t, dir)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	addr := freeAddr(t)
	c := &cluster{
		dir:    dir,
		url:    "https://" + addr,
		tokens: testenv.TokenFiles(t, dir),
		caFile: certFile, // self-signed: the certificate is its own CA
		tls:    &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
	}
	t.Cleanup(func() {
		if t.Failed() {
			c.printLogs(t)
		}
		c.stop()
	})
	mk := func(name string, env []string, args ...string) *proc {
		return &proc{name: name, args: args, logPath: filepath.Join(dir, name+".log"), env: append([]string{
			"PGTRAIN_LOG_FORMAT=json", "PGTRAIN_LOG_LEVEL=debug", "PGTRAIN_NATS_URL=" + natsS.URL,
		}, env...)}
	}
	c.coordinator = mk("coordinator", []string{"PGTRAIN_DSN=" + pg.DSN}, "coordinator", "--listen", addr,
		"--auth-token-file", c.tokens.Auth, "--tls-cert", certFile, "--tls-key", keyFile)
	workerArgs := []string{"--coordinator", c.url, "--coordinator-ca", c.caFile}
	c.workers = []*proc{
		// The fetcher takes its token from the environment, the others from a file.
		mk("fetcher", []string{"PGTRAIN_DSN=" + pg.DSN, "PGTRAIN_COORDINATOR_TOKEN=" + c.tokens.WorkerSecret},
			append([]string{"fetcher", "--id", "fetcher-1"}, workerArgs...)...),
		mk("preprocessor", nil, append([]string{"preprocessor", "--coordinator-token-file", c.tokens.Worker}, workerArgs...)...),
		mk("trainer", nil, append([]string{"trainer", "--id", "trainer-1", "--out-dir", filepath.Join(dir, "models"),
			"--coordinator-token-file", c.tokens.Worker}, workerArgs...)...),
	}
	if err := c.coordinator.start(); err != nil {
		t.Fatal(err)
	}
	if err := c.waitHealthy(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	c.pid = c.coordinator.cmd.Process.Pid
	for _, p := range c.workers {
		if err := p.start(); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func (c *cluster) stop() {
	for _, p := range append(c.workers, c.coordinator) {
		if p != nil {
			p.stop()
		}
	}
}

func (c *cluster) printLogs(t *testing.T) {
	for _, p := range append([]*proc{c.coordinator}, c.workers...) {
		lines := strings.Split(strings.TrimRight(p.log(), "\n"), "\n")
		if len(lines) > 30 {
			lines = lines[len(lines)-30:]
		}
		t.Logf("---- last lines of %s ----\n%s", p.name, strings.Join(lines, "\n"))
	}
}

// httpClient trusts the coordinator's certificate.
func (c *cluster) httpClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: c.tls}}
}

// client is a coordinator client with the given token ("" sends none).
func (c *cluster) client(token string) *client.Client {
	opts := []client.Option{client.WithTLSConfig(c.tls)}
	if token != "" {
		opts = append(opts, client.WithToken(token))
	}
	return client.New(c.url, nil, opts...)
}

// waitHealthy waits until the coordinator answers /healthz.
func (c *cluster) waitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		code, _, err := c.send(http.MethodGet, "/healthz", "", nil)
		if err == nil && code == http.StatusOK {
			return nil
		}
		if !c.coordinator.running() {
			return fmt.Errorf("the coordinator exited: %s", c.coordinator.cmd.ProcessState)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the coordinator is not healthy after %s: %d %v", timeout, code, err)
		}
		time.Sleep(50 * time.Millisecond) // polling interval of a condition with a deadline
	}
}

// send makes one request with the given Authorization header ("" for none).
func (c *cluster) send(method, path, authorization string, body []byte) (int, []byte, error) {
	req, err := http.NewRequest(method, c.url+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, err
}

// checkUp fails the test unless the coordinator is the process it was and answers /healthz.
func (c *cluster) checkUp(t *testing.T) {
	t.Helper()
	if !c.coordinator.running() || c.coordinator.cmd.Process.Pid != c.pid {
		t.Fatalf("the coordinator (pid %d) is gone: %v", c.pid, c.coordinator.cmd.ProcessState)
	}
	code, body, err := c.send(http.MethodGet, "/healthz", "", nil)
	if err != nil || code != http.StatusOK {
		t.Fatalf("/healthz: %d %s %v", code, body, err)
	}
}

// freeAddr is a loopback address with a port that is free now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// runCLI runs a pgtrain command to its end and returns its output.
func runCLI(ctx context.Context, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
