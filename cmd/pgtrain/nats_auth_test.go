package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func secretFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNATSAuthFlagsNameTheFlagAndReadTheEnvironment(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	for _, name := range []string{"nats-creds", "nats-nkey", "nats-tls-ca", "nats-token-file", "nats-password-file"} {
		var nf natsFlags
		fs := newFlagSet("t", "t")
		nf.register(fs)
		args := []string{"--" + name, missing}
		if name == "nats-password-file" {
			args = append(args, "--nats-user", "u")
		}
		if err := parse(fs, args); err != nil {
			t.Fatal(err)
		}
		if _, err := nf.auth.auth(); err == nil || !strings.Contains(err.Error(), "--"+name) {
			t.Errorf("--%s missing: err = %v, want it to name the flag", name, err)
		}
	}

	t.Setenv("PGTRAIN_NATS_TOKEN_FILE", secretFile(t, "tok3n\n"))
	var nf natsFlags
	fs := newFlagSet("t", "t")
	nf.register(fs)
	if err := parse(fs, nil); err != nil {
		t.Fatal(err)
	}
	a, err := nf.auth.auth()
	if err != nil {
		t.Fatal(err)
	}
	if a.Token != "tok3n" {
		t.Fatalf("token from $PGTRAIN_NATS_TOKEN_FILE = %q, want tok3n", a.Token)
	}
	if err := parse(fs, []string{"--nats-nkey", secretFile(t, "seed")}); err != nil {
		t.Fatal(err)
	}
	if _, err := nf.auth.auth(); err == nil || !strings.Contains(err.Error(), "--nats-nkey and --nats-token-file") {
		t.Fatalf("nkey and token: err = %v, want both flags named", err)
	}
}

// `pgtrain nats --auth-token-file` refuses a role without the token and serves one with it.
func TestNATSCommandRequiresItsToken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	token := secretFile(t, "the-server-token\n")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runNATS(ctx, []string{"--store-dir", t.TempDir(), "--port", fmt.Sprint(port), "--auth-token-file", token, "--log-level", "error"})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	connect := func(args ...string) error {
		var nf natsFlags
		fs := newFlagSet("t", "t")
		nf.register(fs)
		if err := parse(fs, append([]string{"--nats-url", url}, args...)); err != nil {
			t.Fatal(err)
		}
		cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
		defer ccancel()
		nc, _, err := nf.connect(cctx, "test", slog.New(slog.DiscardHandler), 20*time.Second)
		if err == nil {
			nc.Close()
		}
		return err
	}
	if err := connect(); err == nil || !strings.Contains(strings.ToLower(err.Error()), "authorization violation") {
		t.Fatalf("no token: err = %v, want an authorization violation", err)
	}
	if err := connect("--nats-token-file", secretFile(t, "not-it")); err == nil {
		t.Fatal("wrong token accepted")
	}
	if err := connect("--nats-token-file", token); err != nil {
		t.Fatalf("right token: %v", err)
	}
}

func TestUpRefusesClientAuthForItsEmbeddedServer(t *testing.T) {
	err := runUp(context.Background(), []string{"--nats-token-file", secretFile(t, "x")})
	if err == nil || !strings.Contains(err.Error(), "--nats-url") {
		t.Fatalf("err = %v, want it to point at --nats-url", err)
	}
}
