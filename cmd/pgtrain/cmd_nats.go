package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"

	"pgtrain/internal/bus"
	"pgtrain/internal/devenv"
	"pgtrain/internal/pgutil"
)

type natsOpts struct {
	storeDir string
	host     string
	port     int
	memLimit int64
	// readyMaxBytes is READY's byte limit, which the default memory limit follows.
	readyMaxBytes int64
	auth          natsServerAuth
	cluster       natsClusterFlags
	log           logFlags
}

// natsClusterFlags make the server one node of a JetStream cluster.
type natsClusterFlags struct {
	serverName string
	name       string
	listen     string
	routes     string
}

func (c *natsClusterFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.serverName, "server-name", "", "this node's name in a JetStream cluster, unique in the cluster (with --cluster-name)")
	fs.StringVar(&c.name, "cluster-name", "", "name of the JetStream cluster this node joins, the same on every node; with --server-name, --cluster-listen and --routes (three nodes keep replicated streams, --stream-replicas 3 of the roles, through the loss of one)")
	fs.StringVar(&c.listen, "cluster-listen", "", "host:port this node listens on for the other nodes' routes (keep it on a network only the nodes reach: routes are not authenticated)")
	fs.StringVar(&c.routes, "routes", "", "comma-separated cluster addresses of the nodes, nats-route://host:port (this node's own may be listed too, so every node gets the same list)")
}

// clusterNamePattern is what nats-server accepts as a server or cluster name, kept to what
// is also a host name's part, so pod names fit.
var clusterNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// maxRoutes bounds --routes: JetStream's clusters are a few nodes, not hundreds.
const maxRoutes = 32

// options checks the cluster flags: none (a single server), or all four.
func (c *natsClusterFlags) options() (devenv.NATSCluster, error) {
	if *c == (natsClusterFlags{}) {
		return devenv.NATSCluster{}, nil
	}
	for _, f := range []struct{ name, v string }{
		{"--server-name", c.serverName}, {"--cluster-name", c.name}, {"--cluster-listen", c.listen}, {"--routes", c.routes},
	} {
		if f.v == "" {
			return devenv.NATSCluster{}, usagef("%s is required with the other cluster flags (--server-name, --cluster-name, --cluster-listen, --routes)", f.name)
		}
	}
	for _, f := range []struct{ name, v string }{{"--server-name", c.serverName}, {"--cluster-name", c.name}} {
		if !clusterNamePattern.MatchString(f.v) {
			return devenv.NATSCluster{}, usagef("%s %q: want 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit", f.name, f.v)
		}
	}
	host, port, err := hostPort(c.listen)
	if err != nil {
		return devenv.NATSCluster{}, usagef("--cluster-listen %q: %v", c.listen, err)
	}
	out := devenv.NATSCluster{ServerName: c.serverName, Name: c.name, Host: host, Port: port}
	parts := strings.Split(c.routes, ",")
	if len(parts) > maxRoutes {
		return devenv.NATSCluster{}, usagef("--routes: %d routes, at most %d", len(parts), maxRoutes)
	}
	for _, r := range parts {
		u, err := url.Parse(strings.TrimSpace(r))
		if err == nil && u.Scheme != "nats-route" && u.Scheme != "nats" {
			err = fmt.Errorf("scheme %q: want nats-route://host:port", u.Scheme)
		}
		if err == nil && (u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "") {
			err = errors.New("want nats-route://host:port, nothing more")
		}
		if err == nil {
			_, _, err = hostPort(u.Host)
		}
		if err != nil {
			return devenv.NATSCluster{}, usagef("--routes %q: %v", pgutil.Redact(strings.TrimSpace(r)), err)
		}
		out.Routes = append(out.Routes, u)
	}
	return out, nil
}

// hostPort splits host:port and checks the port is a real one.
func hostPort(s string) (string, int, error) {
	host, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("port %q: want 1..65535", p)
	}
	if host == "" {
		return "", 0, errors.New("no host")
	}
	return host, port, nil
}

// natsServerAuth is what the embedded server asks of its clients.
type natsServerAuth struct {
	tokenFile    string
	user         string
	passwordFile string
}

func (a *natsServerAuth) register(fs *flag.FlagSet) {
	fs.StringVar(&a.tokenFile, "auth-token-file", "", "require the token in this file of every client")
	fs.StringVar(&a.user, "auth-user", "", "require this user (with --auth-password-file) of every client")
	fs.StringVar(&a.passwordFile, "auth-password-file", "", "file holding the password of --auth-user")
}

// apply reads the secrets into o.
func (a *natsServerAuth) apply(o *devenv.NATSOptions) error {
	if a.tokenFile != "" && a.user != "" {
		return errors.New("--auth-token-file and --auth-user: choose one")
	}
	if (a.user == "") != (a.passwordFile == "") {
		return errors.New("--auth-user and --auth-password-file go together")
	}
	var err error
	if a.tokenFile != "" {
		if o.Token, err = readSecret("--auth-token-file", a.tokenFile); err != nil {
			return err
		}
	}
	if a.user != "" {
		o.User = a.user
		if o.Password, err = readSecret("--auth-password-file", a.passwordFile); err != nil {
			return err
		}
	}
	return nil
}

func natsServerFlags() (*flag.FlagSet, *natsOpts) {
	o := &natsOpts{}
	fs := newFlagSet("nats", "nats [flags]")
	fs.StringVar(&o.storeDir, "store-dir", "pgtrain-data/nats", "JetStream store directory (kept across restarts)")
	fs.IntVar(&o.port, "port", 4222, "client port")
	fs.StringVar(&o.host, "host", "127.0.0.1", "interface to listen on")
	fs.Int64Var(&o.memLimit, "memory-limit", memoryLimitFromReady,
		"soft limit of the server's Go heap in bytes (the runtime's GOMEMLIMIT, which wins when set); -1 for --ready-max-bytes plus 256 MiB (room for what a replay reads), 0 for none")
	fs.Int64Var(&o.readyMaxBytes, "ready-max-bytes", bus.DefaultReadyMaxBytes,
		"the READY stream's byte limit, as given to the coordinator (PGTRAIN_READY_MAX_BYTES sets both): the default --memory-limit follows it")
	o.auth.register(fs)
	o.cluster.register(fs)
	o.log.register(fs)
	return fs, o
}

// memoryLimitFromReady, the default --memory-limit, is bus.ServerMemoryLimit of
// --ready-max-bytes: a fixed 256 MiB made replays of a 2M-row table read READY's blocks from
// disk again and again (1.6× binary COPY against 5.0× without the limit).
const memoryLimitFromReady = -1

// minNATSMemoryLimit leaves room for the messages in flight (RAW's pending pages are tens of
// megabytes): below it the collector would run without pause.
const minNATSMemoryLimit = 64 << 20

// memoryLimit is the heap limit o asks for; 0 means none.
func (o *natsOpts) memoryLimit() (int64, error) {
	if o.memLimit != 0 && o.memLimit != memoryLimitFromReady && o.memLimit < minNATSMemoryLimit {
		return 0, fmt.Errorf("--memory-limit %d: want -1 (from --ready-max-bytes), 0 (none) or at least %d bytes", o.memLimit, minNATSMemoryLimit)
	}
	limit, err := bus.ServerMemoryLimit(o.readyMaxBytes)
	if err != nil {
		return 0, fmt.Errorf("--ready-max-bytes: %w", err)
	}
	if o.memLimit == memoryLimitFromReady {
		return limit, nil
	}
	return o.memLimit, nil
}

// applyMemoryLimit sets the Go runtime's soft memory limit, unless GOMEMLIMIT already did.
func applyMemoryLimit(limit int64) {
	if limit > 0 && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(limit)
	}
}

func runNATS(ctx context.Context, args []string) error {
	fs, o := natsServerFlags()
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	cluster, err := o.cluster.options()
	if err != nil {
		return err
	}
	limit, err := o.memoryLimit()
	if err != nil {
		return err
	}
	applyMemoryLimit(limit)
	storeDir, host, port := &o.storeDir, &o.host, &o.port
	log, err := o.log.logger(os.Stderr)
	if err != nil {
		return err
	}
	log.Info("nats-server memory limit", "bytes", limit, "gomemlimit_env", os.Getenv("GOMEMLIMIT") != "")
	if err := os.MkdirAll(*storeDir, 0o755); err != nil {
		return err
	}
	nopts := devenv.NATSOptions{StoreDir: *storeDir, Port: *port, Host: *host, Cluster: cluster}
	if err := o.auth.apply(&nopts); err != nil {
		return err
	}
	srv, err := devenv.StartNATS(nopts)
	if err != nil {
		return err
	}
	log.Info("nats-server with JetStream ready", "url", pgutil.Redact(srv.URL), "store_dir", *storeDir,
		"auth", nopts.Token != "" || nopts.User != "", "server_name", cluster.ServerName, "cluster", cluster.Name)
	<-ctx.Done()
	log.Info("shutting down nats-server")
	srv.Stop()
	return nil
}
