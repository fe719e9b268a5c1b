package faults

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// proc is one OS process of the cluster, running the real pgtrain binary. Its standard
// output and error go to one log file that outlives restarts, so a failing scenario can
// show what every process said, in order.
type proc struct {
	name    string
	args    []string
	logPath string
	health  string // probe address, when the role serves one

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	state   *os.ProcessState
	starts  int
	lastPID int
}

// start runs the process (again). extraEnv is added for this start only: a fault point
// armed for the first run is not armed again after a restart.
func (p *proc) start(baseEnv []string, extraEnv ...string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && p.state == nil {
		return fmt.Errorf("%s is already running (pid %d)", p.name, p.cmd.Process.Pid)
	}
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(binary, p.args...)
	cmd.Env = append(append(os.Environ(), baseEnv...), extraEnv...)
	cmd.Stdout, cmd.Stderr = f, f
	// The process dies with the test binary, whatever way the test binary ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p.starts++
	fmt.Fprintf(f, "=== harness: start %d of %s: pgtrain %s %s\n", p.starts, p.name, strings.Join(p.args, " "), strings.Join(extraEnv, " "))
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("starting %s: %w", p.name, err)
	}
	p.cmd, p.state, p.lastPID = cmd, nil, cmd.Process.Pid
	done := make(chan struct{})
	p.done = done
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.state = cmd.ProcessState
		p.mu.Unlock()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			fmt.Fprintf(f, "=== harness: waiting for %s: %v\n", p.name, err)
		}
		fmt.Fprintf(f, "=== harness: %s (pid %d) exited: %s\n", p.name, cmd.Process.Pid, cmd.ProcessState)
		f.Close()
		close(done)
	}()
	return nil
}

// running reports whether the process is alive.
func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && p.state == nil
}

// pid is the current (or last) process id.
func (p *proc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastPID
}

// exited is closed when the current run ends.
func (p *proc) exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// exitState is how the last run ended; nil while it runs.
func (p *proc) exitState() *os.ProcessState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state
}

// signal sends sig and waits for the process to exit, up to timeout.
func (p *proc) signal(sig syscall.Signal, timeout time.Duration) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return fmt.Errorf("%s never started", p.name)
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signalling %s: %w", p.name, err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%s did not exit within %s of %s", p.name, timeout, sig)
	}
}

// kill is kill -9: no clean-up of any kind happens in the process.
func (p *proc) kill() error { return p.signal(syscall.SIGKILL, 10*time.Second) }

// killedBySignal reports whether the last run ended by sig.
func (p *proc) killedBySignal(sig syscall.Signal) bool {
	st := p.exitState()
	if st == nil {
		return false
	}
	ws, ok := st.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// memory reads the process's resident set now (VmRSS) and at its peak (VmHWM), in bytes.
func (p *proc) memory() (rss, hwm int64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.pid()) + "/status")
	if err != nil {
		return 0, 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		name, val, ok := strings.Cut(line, ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %s: %w", p.name, line, err)
		}
		if name == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
	}
	return rss, hwm, nil
}

// ready polls the process's /readyz until it answers 200.
func (p *proc) ready(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		select {
		case <-p.exited():
			return fmt.Errorf("%s exited before it was ready: %s", p.name, p.exitState())
		default:
		}
		resp, err := http.Get("http://" + p.health + "/readyz")
		if err == nil {
			body := new(bytes.Buffer)
			_, _ = body.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(body.String()))
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %s", p.name, timeout, last)
		}
		time.Sleep(50 * time.Millisecond) // polling interval of a condition with a deadline
	}
}

// stats decodes the process's /statsz.
func (p *proc) stats(v any) error {
	resp, err := http.Get("http://" + p.health + "/statsz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// logLines returns the JSON log records of every run whose message contains msg.
func (p *proc) logLines(msg string) []map[string]any {
	f, err := os.Open(p.logPath)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.Contains(line, []byte(msg)) {
			continue
		}
		var rec map[string]any
		if json.Unmarshal(line, &rec) != nil {
			continue
		}
		if m, _ := rec["msg"].(string); strings.Contains(m, msg) {
			out = append(out, rec)
		}
	}
	return out
}

// logContains reports whether any line (JSON or not, e.g. the faultpoint's) contains s.
func (p *proc) logContains(s string) bool {
	b, _ := os.ReadFile(p.logPath)
	return bytes.Contains(b, []byte(s))
}

// tail is the last n lines of the log.
func (p *proc) tail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// handedPorts are the ports freePort gave out: a port is closed again before the process
// it is meant for binds it, so the kernel may offer it twice; it must not be handed twice.
var handedPorts = struct {
	sync.Mutex
	seen map[int]bool
}{seen: map[int]bool{}}

// freePort asks the OS for a loopback port that is free now and was not handed out before.
func freePort(t testing.TB) int {
	t.Helper()
	handedPorts.Lock()
	defer handedPorts.Unlock()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !handedPorts.seen[port] {
			handedPorts.seen[port] = true
			return port
		}
	}
}
