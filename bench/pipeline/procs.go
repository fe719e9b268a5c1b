package main

import (
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
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is one child process: a role of the cluster under test, or a baseline.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error
}

// startProc starts bin with args, its output going to logPath. The child is killed if the
// harness dies, so an interrupted run leaves no stray servers behind.
func startProc(name, logPath string, env []string, bin string, args ...string) (*proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// stop asks the process to shut down (SIGTERM: every role finishes its in-flight work) and
// waits for it, killing it after timeout.
func (p *proc) stop(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.exitErr()
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.exitErr()
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within %s", p.name, timeout)
	}
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) exitErr() error {
	if p.err != nil {
		return fmt.Errorf("%s: %w; last log lines:\n%s", p.name, p.err, tail(p.logPath, 8))
	}
	return nil
}

// peakRSSMB is the process's peak resident set (the kernel's high-water mark, what
// /proc/PID/status calls VmHWM), known once it has exited.
func (p *proc) peakRSSMB() float64 {
	select {
	case <-p.done:
	default:
		return 0
	}
	return maxRSSMB(p.cmd.ProcessState)
}

// cpuSeconds is the user and system CPU time the process used, known once it has exited.
func (p *proc) cpuSeconds() float64 {
	select {
	case <-p.done:
	default:
		return 0
	}
	ps := p.cmd.ProcessState
	return (ps.UserTime() + ps.SystemTime()).Seconds()
}

// procCPUSeconds is the CPU time a running process has used so far (0 once it has exited).
func procCPUSeconds(p *proc) float64 {
	if p == nil || p.cmd.Process == nil {
		return 0
	}
	_, ticks, _ := procTicks(p.cmd.Process.Pid, false)
	return ticks / clockTicks
}

// pgCPUSeconds is the CPU time PostgreSQL has used so far: the postmaster's own, that of
// its exited children (where a closed session's backend is counted once reaped), and that
// of its live children (open sessions, parallel workers, background processes).
func pgCPUSeconds(dataDir string) float64 {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pm, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		return 0
	}
	_, ticks, ok := procTicks(pm, true)
	if !ok {
		return 0
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == pm {
			continue
		}
		if parent, t, ok := procTicks(pid, false); ok && parent == pm {
			ticks += t
		}
	}
	return ticks / clockTicks
}

// procTicks reads a process's parent and its CPU ticks (user and system, and with children
// also those of its reaped children) from /proc/PID/stat.
func procTicks(pid int, children bool) (ppid int, ticks float64, ok bool) {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0, false
	}
	// The fields after the command name (which may hold spaces and parentheses): state,
	// ppid, ..., utime and stime (fields 14 and 15 of the line), cutime and cstime.
	s := string(stat)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 15 {
		return 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	last := 13
	if children {
		last = 15
	}
	for _, v := range f[11:last] {
		n, _ := strconv.ParseFloat(v, 64)
		ticks += n
	}
	return ppid, ticks, true
}

// clockTicks is USER_HZ, which is 100 on every Linux the harness runs on.
const clockTicks = 100

func maxRSSMB(ps *os.ProcessState) float64 {
	if ps == nil {
		return 0
	}
	ru, ok := ps.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0
	}
	return float64(ru.Maxrss) / 1024 // KiB on Linux
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// runJSON runs a baseline process to its end and decodes the JSON object it prints.
func runJSON(ctx context.Context, timeout time.Duration, v any, bin string, args ...string) (peakMB float64, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("%s %s: %w: %s", bin, strings.Join(args, " "), err, lastLines(stderr.String(), 8))
	}
	if err := json.Unmarshal(lastLine(stdout.Bytes()), v); err != nil {
		return 0, fmt.Errorf("%s printed %q: %w", bin, stdout.String(), err)
	}
	return maxRSSMB(cmd.ProcessState), nil
}

func lastLine(b []byte) []byte {
	b = bytes.TrimSpace(b)
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		return b[i+1:]
	}
	return b
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// freePort asks the kernel for a free loopback port. Another process could take it before
// the child listens on it; on a benchmark machine that does not happen.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitFor polls cond until it holds, a process in watch exits, or the deadline passes.
func waitFor(ctx context.Context, timeout time.Duration, what string, watch []*proc, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		for _, p := range watch {
			select {
			case <-p.done:
				err := p.exitErr()
				if err == nil {
					err = errors.New(p.name + " exited")
				}
				return fmt.Errorf("waiting for %s: %w", what, err)
			default:
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not after %s", what, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	return enc.Encode(v)
}

func dialTimeout(port int) (net.Conn, error) {
	return net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond)
}
