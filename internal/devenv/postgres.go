package devenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNoPostgres is returned when no PostgreSQL server binaries can be found.
var ErrNoPostgres = errors.New("PostgreSQL server binaries (initdb, postgres) not found on PATH or under /usr/lib/postgresql/*/bin")

// Postgres is a running throwaway cluster.
type Postgres struct {
	DSN     string
	Port    int
	DataDir string
	dir     string
	cmd     *exec.Cmd
	exited  chan error
	cred    *syscall.Credential
	binDir  string
	logPath string
}

// PostgresOptions tunes the throwaway cluster.
type PostgresOptions struct {
	// Dir holds the cluster; empty means a new temporary directory removed by Stop.
	Dir string
	// Settings are extra `-c name=value` server settings.
	Settings map[string]string
}

// FindPostgresBin returns the directory that holds initdb and postgres.
func FindPostgresBin() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if resolved, err := filepath.EvalSymlinks(p); err == nil {
			p = resolved
		}
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "postgres")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Sort(sort.Reverse(sort.StringSlice(dirs))) // newest major version first
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", ErrNoPostgres
}

// StartPostgres creates a cluster and starts its server on a free loopback port. PostgreSQL
// refuses to run as root, so as root the server runs as the "postgres" (or "nobody") user.
func StartPostgres(ctx context.Context, opts PostgresOptions) (*Postgres, error) {
	bin, err := FindPostgresBin()
	if err != nil {
		return nil, err
	}
	p := &Postgres{binDir: bin, exited: make(chan error, 1)}
	if opts.Dir == "" {
		if p.dir, err = os.MkdirTemp("", "pgtrain-pg-"); err != nil {
			return nil, err
		}
		opts.Dir = p.dir
	}
	if p.cred, err = serverCredential(); err != nil {
		p.cleanup()
		return nil, err
	}
	if p.dir == "" {
		if err := makeReachable(filepath.Dir(opts.Dir), p.cred); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
			return nil, err
		}
	}
	p.DataDir = filepath.Join(opts.Dir, "data")
	p.logPath = filepath.Join(opts.Dir, "postgres.log")
	if p.cred != nil {
		if err := chownTree(opts.Dir, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
			p.cleanup()
			return nil, err
		}
	}
	if _, err := os.Stat(filepath.Join(p.DataDir, "PG_VERSION")); err != nil {
		out, err := p.command(ctx, "initdb", "-D", p.DataDir, "-U", "postgres", "--auth=trust",
			"-E", "UTF8", "--locale=C", "--no-sync").CombinedOutput()
		if err != nil {
			p.cleanup()
			return nil, fmt.Errorf("initdb: %w: %s", err, lastLines(string(out), 5))
		}
	}
	if p.Port, err = freePort(); err != nil {
		p.cleanup()
		return nil, err
	}
	if err := p.start(opts.Settings); err != nil {
		p.cleanup()
		return nil, err
	}
	p.DSN = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.Port)
	if err := p.waitReady(ctx, 30*time.Second); err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

func (p *Postgres) start(settings map[string]string) error {
	args := []string{"-D", p.DataDir, "-p", strconv.Itoa(p.Port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=200", "-c", "shared_buffers=256MB"}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "-c", k+"="+settings[k])
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	p.cmd = p.command(context.Background(), "postgres", args...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	// Its own process group, so a Ctrl-C at the terminal reaches pgtrain, which then stops
	// the server in order instead of killing it mid-write.
	p.cmd.SysProcAttr.Setpgid = true
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting postgres: %w", err)
	}
	p.exited = make(chan error, 1)
	go func() { p.exited <- p.cmd.Wait(); logf.Close() }()
	return nil
}

func (p *Postgres) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		conn, err := pgx.Connect(cctx, p.DSN)
		cancel()
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		select {
		case err := <-p.exited:
			log, _ := os.ReadFile(p.logPath)
			return fmt.Errorf("postgres exited during start-up (%v): %s", err, lastLines(string(log), 5))
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("postgres not ready after %s: %w", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Restart stops the server (fast shutdown) and starts it again on the same port and data,
// the way an operator's restart looks to clients.
func (p *Postgres) Restart(ctx context.Context) error {
	p.stopServer()
	if err := p.start(nil); err != nil {
		return err
	}
	return p.waitReady(ctx, 30*time.Second)
}

// Stop shuts the server down and removes the cluster if Start created its directory.
func (p *Postgres) Stop() {
	p.stopServer()
	p.cleanup()
}

func (p *Postgres) stopServer() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGINT) // fast shutdown
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	p.cmd = nil
}

func (p *Postgres) cleanup() {
	if p.dir != "" {
		os.RemoveAll(p.dir)
	}
}

func (p *Postgres) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(p.binDir, name), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	return cmd
}

func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, errors.New("running as root and neither a postgres nor a nobody user exists to run the server")
}

// MakeClusterParent creates dir, under which StartPostgres will create a cluster, so that
// the server can reach it (see makeReachable). Callers that put other things in dir first
// call it before they do.
func MakeClusterParent(dir string) error {
	cred, err := serverCredential()
	if err != nil {
		return err
	}
	return makeReachable(dir, cred)
}

// makeReachable creates dir, the directory a cluster goes in, and its missing parents with
// mode 0755 whatever the umask, and checks that the server can pass through every
// directory above its cluster: as root the server runs as cred's user, and initdb fails
// with a bare "Permission denied" on a directory it cannot pass. A directory pgtrain did not
// create is not changed; the error names it and what to do.
func makeReachable(dir string, cred *syscall.Credential) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		missing = append(missing, d)
		if d == filepath.Dir(d) {
			break
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, d := range missing {
		if err := os.Chmod(d, 0o755); err != nil {
			return err
		}
	}
	if cred == nil {
		return nil
	}
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if !canPass(fi, cred) {
			return fmt.Errorf("the PostgreSQL server runs as uid %d (pgtrain runs as root, which PostgreSQL refuses) and cannot pass through %s (mode %#o): run chmod o+x %s, or choose a directory it can reach",
				cred.Uid, d, fi.Mode().Perm(), d)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// canPass reports whether cred's user may pass through the directory fi describes.
func canPass(fi os.FileInfo, cred *syscall.Credential) bool {
	perm := fi.Mode().Perm()
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !ok:
		return true // not a Unix file system: nothing to check
	case st.Uid == cred.Uid:
		return perm&0o100 != 0
	case st.Gid == cred.Gid:
		return perm&0o010 != 0
	}
	return perm&0o001 != 0
}

func chownTree(dir string, uid, gid int) error {
	return filepath.Walk(dir, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
