package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"pgtrain/coordinator"
	"pgtrain/coordinator/client"
)

// coordinatorTokenEnv holds the bearer token itself, for deployments that inject secrets as
// environment variables; --coordinator-token-file wins when both are set. It is not a flag:
// a token on a command line is visible to every user of the host.
const coordinatorTokenEnv = "PGTRAIN_COORDINATOR_TOKEN"

// coordAuthFlags are how a role or a command authenticates to the coordinator and checks
// its certificate.
type coordAuthFlags struct {
	tokenFile string
	ca        string
}

func (a *coordAuthFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.tokenFile, "coordinator-token-file", "",
		"file holding the bearer token for the coordinator, alone on one line (or put the token itself in $"+coordinatorTokenEnv+")")
	fs.StringVar(&a.ca, "coordinator-ca", "", "PEM file of the CA that signed the coordinator's TLS certificate (for an https:// coordinator with a private CA)")
}

// client returns a coordinator client with the token and CA the flags name.
func (a *coordAuthFlags) client(url string, log *slog.Logger, extra ...client.Option) (*client.Client, error) {
	opts := extra
	token := os.Getenv(coordinatorTokenEnv)
	if a.tokenFile != "" {
		var err error
		if token, err = readTokenFile(a.tokenFile); err != nil {
			return nil, err
		}
	}
	if token != "" {
		opts = append(opts, client.WithToken(token))
	}
	if a.ca != "" {
		pem, err := os.ReadFile(a.ca)
		if err != nil {
			return nil, fmt.Errorf("--coordinator-ca: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--coordinator-ca %s: no PEM certificate in the file", a.ca)
		}
		opts = append(opts, client.WithTLSConfig(&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}))
	}
	return client.New(url, log, opts...), nil
}

// readTokenFile reads a client's token: the file holds the token alone. Errors never quote
// the file's content.
func readTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--coordinator-token-file: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" || strings.ContainsAny(token, " \t\r\n") {
		return "", fmt.Errorf("--coordinator-token-file %s: want one token alone on one line", path)
	}
	return token, nil
}

// tokenFiles collects repeated --auth-token-file flags.
type tokenFiles []string

func (t *tokenFiles) String() string { return strings.Join(*t, ",") }

// Set adds a file; an empty value (an empty $PGTRAIN_AUTH_TOKEN_FILE) adds none, which is
// safe: without tokens the coordinator serves loopback only.
func (t *tokenFiles) Set(v string) error {
	if v != "" {
		*t = append(*t, v)
	}
	return nil
}

// serverAuthFlags are the coordinator's authentication and TLS settings.
type serverAuthFlags struct {
	tokenFiles tokenFiles
}

func (s *serverAuthFlags) register(fs *flag.FlagSet, cfg *coordinator.Config) {
	fs.Var(&s.tokenFiles, "auth-token-file",
		"bearer tokens the API accepts, one per line: SECRET SCOPE[,SCOPE...] [NAME], scopes read, submit, worker, data, predict (data: plans and models come with vocabularies and column statistics, and model files may be downloaded; predict: online prediction only) (repeatable; /healthz and /readyz stay open)")
	fs.BoolVar(&cfg.InsecureNoAuth, "insecure-no-auth", false, "serve a non-loopback --listen address without tokens (anyone who reaches it can submit jobs and read plans)")
	fs.StringVar(&cfg.TLSCertFile, "tls-cert", "", "PEM certificate: serve the API over HTTPS (with --tls-key)")
	fs.StringVar(&cfg.TLSKeyFile, "tls-key", "", "PEM private key of --tls-cert")
}

// tokens loads every token file.
func (s *serverAuthFlags) tokens() ([]coordinator.Token, error) {
	var out []coordinator.Token
	for _, path := range s.tokenFiles {
		ts, err := coordinator.LoadTokens(path)
		if err != nil {
			return nil, fmt.Errorf("--auth-token-file: %w", err)
		}
		out = append(out, ts...)
	}
	return out, nil
}
