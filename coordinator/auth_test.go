package coordinator

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/coordinator/client"
	"pgtrain/coordinator/dashboard"
	"pgtrain/internal/testenv"
	"pgtrain/messages"
)

const (
	readSecret   = "read-secret-0123456789"
	submitSecret = "submit-secret-0123456789"
	workerSecret = "worker-secret-0123456789"
)

func TestParseTokens(t *testing.T) {
	tests := []struct {
		name       string
		in         string
		wantErr    string
		wantNames  []string
		wantScopes [][]Scope
	}{
		{
			name:      "scopes, names, comments and blank lines",
			in:        "# users\n\n" + readSecret + " read,submit alice\n  " + workerSecret + "  worker \n",
			wantNames: []string{"alice", "tokens:4"}, wantScopes: [][]Scope{{ScopeRead, ScopeSubmit}, {ScopeWorker}},
		},
		{name: "unknown scope", in: readSecret + " read,admin", wantErr: `tokens:1: token tokens:1: unknown scope "admin"`},
		{name: "no scope", in: readSecret + " ,", wantErr: "tokens:1: token tokens:1: no scope"},
		{name: "secret alone", in: readSecret, wantErr: "tokens:1: want SECRET SCOPE[,SCOPE...] [NAME], got 1 fields"},
		{name: "too many fields", in: readSecret + " read a b", wantErr: "got 4 fields"},
		{name: "short secret", in: "\nshort read", wantErr: "tokens:2: token tokens:2: the secret is shorter than 16 characters"},
		{name: "empty file", in: "# nothing\n", wantErr: "tokens: no token in the file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseTokens(strings.NewReader(tt.in), "tokens")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), readSecret) || strings.Contains(err.Error(), "short ") {
					t.Fatalf("the error quotes the secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.wantNames) {
				t.Fatalf("%d tokens, want %d", len(got), len(tt.wantNames))
			}
			for i, tok := range got {
				if tok.Name != tt.wantNames[i] || !slices.Equal(tok.Scopes, tt.wantScopes[i]) {
					t.Errorf("token %d: %s %v, want %s %v", i, tok.Name, tok.Scopes, tt.wantNames[i], tt.wantScopes[i])
				}
			}
		})
	}
}

func mustToken(t *testing.T, name, secret string, scopes ...Scope) Token {
	t.Helper()
	tok, err := NewToken(name, secret, scopes...)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestConfigAuth(t *testing.T) {
	user := mustToken(t, "user", readSecret, ScopeRead)
	tests := []struct {
		name    string
		cfg     Config
		wantErr error
	}{
		{name: "loopback without tokens", cfg: Config{Listen: "127.0.0.1:0"}},
		{name: "localhost without tokens", cfg: Config{Listen: "localhost:8080"}},
		{name: "ipv6 loopback without tokens", cfg: Config{Listen: "[::1]:8080"}},
		{name: "every interface without tokens", cfg: Config{Listen: ":8080"}, wantErr: ErrNoAuth},
		{name: "0.0.0.0 without tokens", cfg: Config{Listen: "0.0.0.0:8080"}, wantErr: ErrNoAuth},
		{name: "a host name without tokens", cfg: Config{Listen: "coordinator:8080"}, wantErr: ErrNoAuth},
		{name: "0.0.0.0 insecure", cfg: Config{Listen: "0.0.0.0:8080", InsecureNoAuth: true}},
		{name: "0.0.0.0 with tokens", cfg: Config{Listen: "0.0.0.0:8080", Tokens: []Token{user}}},
		{name: "same secret twice", cfg: Config{Tokens: []Token{user, mustToken(t, "other", readSecret, ScopeWorker)}}, wantErr: errAny},
		{name: "a zero token", cfg: Config{Tokens: []Token{{Name: "x", Scopes: []Scope{ScopeRead}}}}, wantErr: errAny},
		{name: "certificate without key", cfg: Config{TLSCertFile: "c.pem"}, wantErr: errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.WithDefaults().Validate()
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("Validate() = %v", err)
			case tt.wantErr == errAny && err == nil, tt.wantErr != nil && tt.wantErr != errAny && !errors.Is(err, tt.wantErr):
				t.Fatalf("Validate() = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

var errAny = errors.New("any error")

// authServer is a coordinator with one token per scope, served by httptest.
func authServer(t *testing.T, e *env) (*Coordinator, string) {
	t.Helper()
	c, err := New(t.Context(), Config{Tokens: []Token{
		mustToken(t, "reader", readSecret, ScopeRead),
		mustToken(t, "submitter", submitSecret, ScopeSubmit),
		mustToken(t, "worker", workerSecret, ScopeWorker),
	}}, map[string]*pgxpool.Pool{"": e.pool}, e.bus, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return c, newHTTPTestServer(t, c)
}

// Every registered route is checked: 401 without a token or with a wrong one, 403 with a
// token of another scope, and through with a token of its scope. A route added without a
// scope panics in routes(), and one made public fails the list of public routes here.
func TestEveryRouteNeedsItsScope(t *testing.T) {
	e := newEnv(t)
	c, srv := authServer(t, e)
	secrets := map[Scope]string{ScopeRead: readSecret, ScopeSubmit: submitSecret, ScopeWorker: workerSecret}
	var publicRoutes []string
	for _, rt := range c.api() {
		method, path, ok := strings.Cut(rt.pattern, " ")
		if !ok {
			method, path = http.MethodGet, rt.pattern+"no-such-route"
		}
		path = strings.NewReplacer("{id}", "no-job", "{lease_id}", "no-lease").Replace(path)
		send := func(secret string) *http.Response {
			req := mustRequest(t, method, srv+path, []byte(`{}`))
			if secret != "" {
				req.Header.Set("Authorization", "Bearer "+secret)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
				var er messages.ErrorResponse
				if json.Unmarshal(body, &er) != nil || er.Error == "" {
					t.Errorf("%s %s: %d with body %q, want a JSON error", method, path, resp.StatusCode, body)
				}
				if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("%s %s: %d without WWW-Authenticate: Bearer", method, path, resp.StatusCode)
				}
				for _, s := range secrets {
					if strings.Contains(string(body), s) {
						t.Errorf("%s %s: the answer quotes a secret: %s", method, path, body)
					}
				}
			}
			return resp
		}
		t.Run(rt.pattern, func(t *testing.T) {
			if rt.access.public {
				publicRoutes = append(publicRoutes, rt.pattern)
				if code := send("").StatusCode; code == http.StatusUnauthorized || code == http.StatusForbidden {
					t.Fatalf("public route answered %d without a token", code)
				}
				return
			}
			if len(rt.access.scopes) == 0 {
				t.Fatal("the route has no scope")
			}
			for _, secret := range []string{"", "wrong-secret-0123456789", "Bearer", readSecret + "x"} {
				if code := send(secret).StatusCode; code != http.StatusUnauthorized {
					t.Errorf("with token %q: %d, want 401", secret, code)
				}
			}
			for scope, secret := range secrets {
				code := send(secret).StatusCode
				if slices.Contains(rt.access.scopes, scope) {
					if code == http.StatusUnauthorized || code == http.StatusForbidden {
						t.Errorf("with a %s token: %d, want the route to answer", scope, code)
					}
				} else if code != http.StatusForbidden {
					t.Errorf("with a %s token: %d, want 403", scope, code)
				}
			}
		})
	}
	if want := []string{"GET /healthz", "GET /readyz", "GET " + dashboard.Path}; !slices.Equal(publicRoutes, want) {
		t.Fatalf("public routes %v, want only %v", publicRoutes, want)
	}
}

// A token with several scopes reaches the routes of each; the client sends it and reads
// 401 and 403 as APIErrors.
func TestClientToken(t *testing.T) {
	e := newEnv(t)
	_, srv := authServer(t, e)
	both, err := New(t.Context(), Config{Tokens: []Token{mustToken(t, "user", readSecret, ScopeRead, ScopeSubmit)}},
		map[string]*pgxpool.Pool{"": e.pool}, e.bus, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	bothURL := newHTTPTestServer(t, both)
	ctx := context.Background()
	if _, err := client.New(bothURL, nil, client.WithToken(readSecret)).Jobs(ctx); err != nil {
		t.Fatalf("read,submit token listing jobs: %v", err)
	}
	_, err = client.New(bothURL, nil, client.WithToken(readSecret)).Submit(ctx, []byte(`{}`))
	if ae := apiErr(t, err); ae.Status != http.StatusBadRequest {
		t.Fatalf("read,submit token submitting an empty spec: %v, want 400", err)
	}
	_, err = client.New(srv, nil).Jobs(ctx)
	if ae := apiErr(t, err); ae.Status != http.StatusUnauthorized {
		t.Fatalf("no token: %v, want 401", err)
	}
	_, err = client.New(srv, nil, client.WithToken(workerSecret)).Jobs(ctx)
	if ae := apiErr(t, err); ae.Status != http.StatusForbidden || !strings.Contains(ae.Message, "worker") {
		t.Fatalf("worker token listing jobs: %v, want 403 naming the token", err)
	}
	if err := client.New(srv, nil).Healthy(ctx); err != nil {
		t.Fatalf("readyz without a token: %v", err)
	}
}

// Without tokens, a non-loopback address is refused at New unless InsecureNoAuth is set.
func TestNonLoopbackWithoutTokensIsRefused(t *testing.T) {
	e := newEnv(t)
	sources := map[string]*pgxpool.Pool{"": e.pool}
	_, err := New(t.Context(), Config{Listen: "0.0.0.0:0"}, sources, e.bus, testLogger(t))
	if !errors.Is(err, ErrNoAuth) {
		t.Fatalf("New on 0.0.0.0 without tokens: %v, want ErrNoAuth", err)
	}
	r := start(t, e, Config{Listen: "0.0.0.0:0", InsecureNoAuth: true})
	host, _, err := net.SplitHostPort(r.c.Addr())
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsUnspecified() {
		t.Fatalf("listening on %s, want every interface", r.c.Addr())
	}
	r = start(t, e, Config{Listen: "0.0.0.0:0", Tokens: []Token{mustToken(t, "w", workerSecret, ScopeWorker)}})
	if _, err := r.cl.Jobs(context.Background()); apiErr(t, err).Status != http.StatusUnauthorized {
		t.Fatalf("a token-protected coordinator answered %v without a token", err)
	}
}

// TLS: a client that trusts the CA reaches the coordinator; one that does not fails at
// once (a certificate error is not retried); plain HTTP gets nothing useful.
func TestTLS(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	caPEM, certFile, keyFile := testenv.SelfSignedCert(t, dir)
	r := start(t, e, Config{TLSCertFile: certFile, TLSKeyFile: keyFile, Tokens: []Token{mustToken(t, "user", readSecret, ScopeRead)}})
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("bad PEM")
	}
	ctx := context.Background()
	url := "https://" + r.c.Addr()
	trusted := client.New(url, nil, client.WithToken(readSecret), client.WithTLSConfig(&tls.Config{RootCAs: roots}))
	if _, err := trusted.Jobs(ctx); err != nil {
		t.Fatalf("over TLS with the CA: %v", err)
	}
	begun := time.Now()
	_, err := client.New(url, nil, client.WithToken(readSecret)).Jobs(ctx)
	var ua x509.UnknownAuthorityError
	if !errors.As(err, &ua) {
		t.Fatalf("without the CA: %v, want an unknown authority error", err)
	}
	if d := time.Since(begun); d > 5*time.Second {
		t.Fatalf("the certificate error took %s: retried", d)
	}
	if _, err := client.New("http://"+r.c.Addr(), nil, client.WithToken(readSecret)).Jobs(ctx); err == nil {
		t.Fatal("plain HTTP to the TLS listener succeeded")
	}
	if _, err := New(t.Context(), Config{TLSCertFile: keyFile, TLSKeyFile: certFile}, map[string]*pgxpool.Pool{"": e.pool}, e.bus, nil); err == nil ||
		!strings.Contains(err.Error(), "TLS certificate") {
		t.Fatalf("swapped certificate and key: %v, want a TLS certificate error at New", err)
	}
}
