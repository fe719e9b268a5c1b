package devenv

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NATS is an embedded nats-server with JetStream.
type NATS struct {
	Server *server.Server
	URL    string
	opts   *server.Options
	dir    string
}

// NATSOptions tunes the embedded server.
type NATSOptions struct {
	// StoreDir holds JetStream's files; empty means a temporary directory removed by Stop.
	StoreDir string
	// Port to listen on; 0 picks a free one.
	Port int
	// Host to listen on; empty means 127.0.0.1.
	Host string
	// MaxPayload in bytes; 0 means 8 MiB, the advised ceiling, so pages can be large.
	MaxPayload int32
	// Token, when set, is required of every client.
	Token string
	// User and Password, when set, are required of every client (instead of a token).
	User     string
	Password string
	// Nkeys are users who sign in with an nkey instead.
	Nkeys []*server.NkeyUser
	// TLS, when set, makes the server speak TLS only; set ClientAuth in it to ask clients
	// for a certificate.
	TLS *tls.Config
	// Cluster, when its Name is set, makes the server one node of a JetStream cluster.
	Cluster NATSCluster
}

// NATSCluster is one node's part in a JetStream cluster: every node has its own ServerName
// and store directory, the same Name, and routes to the others.
type NATSCluster struct {
	// ServerName names this node; JetStream's placement and leaders are reported by it.
	ServerName string
	// Name is the cluster's name, the same on every node.
	Name string
	// Host and Port are where this node listens for the other nodes' routes.
	Host string
	Port int
	// Routes are the other nodes' cluster addresses (nats-route://host:port).
	Routes []*url.URL
}

// StartNATS starts the server and waits until it accepts connections.
func StartNATS(opts NATSOptions) (*NATS, error) {
	n := &NATS{}
	if opts.StoreDir == "" {
		dir, err := os.MkdirTemp("", "pgtrain-nats-")
		if err != nil {
			return nil, err
		}
		n.dir, opts.StoreDir = dir, dir
	}
	if opts.Port == 0 {
		opts.Port = server.RANDOM_PORT
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.MaxPayload == 0 {
		opts.MaxPayload = 8 << 20
	}
	n.opts = &server.Options{
		Host:       opts.Host,
		Port:       opts.Port,
		JetStream:  true,
		StoreDir:   opts.StoreDir,
		MaxPayload: opts.MaxPayload,
		NoLog:      true,
		NoSigs:     true,
	}
	n.opts.Authorization, n.opts.Username, n.opts.Password = opts.Token, opts.User, opts.Password
	n.opts.Nkeys = opts.Nkeys
	if opts.TLS != nil {
		n.opts.TLS, n.opts.TLSConfig = true, opts.TLS
		n.opts.TLSVerify = opts.TLS.ClientAuth == tls.RequireAndVerifyClientCert
	}
	if c := opts.Cluster; c.Name != "" {
		n.opts.ServerName = c.ServerName
		n.opts.Cluster = server.ClusterOpts{Name: c.Name, Host: c.Host, Port: c.Port}
		n.opts.Routes = c.Routes
	}
	if err := n.start(); err != nil {
		n.cleanup()
		return nil, err
	}
	return n, nil
}

func (n *NATS) start() error {
	s, err := server.NewServer(n.opts)
	if err != nil {
		return fmt.Errorf("nats-server: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return errors.New("nats-server not ready after 10s")
	}
	n.Server = s
	n.URL = s.ClientURL()
	// Keep the port across restarts so clients reconnect to the same address.
	if addr, ok := s.Addr().(*net.TCPAddr); ok {
		n.opts.Port = addr.Port
	}
	if addr := s.ClusterAddr(); addr != nil {
		n.opts.Cluster.Port = addr.Port
	}
	return nil
}

// Restart shuts the server down and starts it again on the same port and store directory.
func (n *NATS) Restart() error {
	n.Server.Shutdown()
	n.Server.WaitForShutdown()
	return n.start()
}

// Stop shuts the server down and removes a temporary store directory.
func (n *NATS) Stop() {
	if n.Server != nil {
		n.Server.Shutdown()
		n.Server.WaitForShutdown()
	}
	n.cleanup()
}

func (n *NATS) cleanup() {
	if n.dir != "" {
		os.RemoveAll(n.dir)
	}
}
