package coordinator

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
)

// Scope is a permission a bearer token carries.
type Scope string

// The scopes. Users hold read and submit; fetchers, preprocessors and trainers hold worker.
const (
	// ScopeRead lists jobs and reads a job's status and plan.
	ScopeRead Scope = "read"
	// ScopeSubmit submits jobs.
	ScopeSubmit Scope = "submit"
	// ScopeWorker takes and reports leases, claims jobs, reports training progress and fails
	// jobs: what the worker roles do.
	ScopeWorker Scope = "worker"
	// ScopeData may see values of the data in what the API returns: a plan's vocabularies
	// (the most frequent values of each categorical column) and column statistics. Without
	// it a plan comes without them.
	ScopeData Scope = "data"
	// ScopePredict calls online prediction (POST /v1/models/{id}:predict), and nothing
	// else: what an application serving predictions needs, without reading job plans or
	// submitting jobs that read the database. A submit token may predict too.
	ScopePredict Scope = "predict"
)

// Scopes lists every scope a token may carry.
var Scopes = []Scope{ScopeRead, ScopeSubmit, ScopeWorker, ScopeData, ScopePredict}

// MinTokenLength is the shortest secret accepted: a token is a password no human types.
const MinTokenLength = 16

// Token is one bearer token the coordinator accepts. It keeps only the SHA-256 of the
// secret, so the secret is never in memory after loading, and comparing hashes of equal
// length does not leak the secret's length.
type Token struct {
	// Name identifies the token in logs (never the secret): the name given in the token
	// file, or file:line.
	Name   string
	Scopes []Scope
	hash   [sha256.Size]byte
}

// NewToken makes a Token from its secret.
func NewToken(name, secret string, scopes ...Scope) (Token, error) {
	if len(secret) < MinTokenLength {
		return Token{}, fmt.Errorf("token %s: the secret is shorter than %d characters", name, MinTokenLength)
	}
	if strings.ContainsFunc(secret, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return Token{}, fmt.Errorf("token %s: the secret has a space or a control character", name)
	}
	if len(scopes) == 0 {
		return Token{}, fmt.Errorf("token %s: no scope", name)
	}
	for _, s := range scopes {
		if !slices.Contains(Scopes, s) {
			return Token{}, fmt.Errorf("token %s: unknown scope %q (want %s)", name, s, joinScopes(Scopes))
		}
	}
	return Token{Name: name, Scopes: slices.Clone(scopes), hash: sha256.Sum256([]byte(secret))}, nil
}

// GenerateToken returns a new random secret (32 bytes from crypto/rand, base64url).
func GenerateToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generating a token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// LoadTokens reads a token file. Each line is
//
//	SECRET SCOPE[,SCOPE...] [NAME]
//
// with blank lines and lines starting with # ignored. NAME (default file:line) is what logs
// show. Errors name the file and line, never the secret.
func LoadTokens(path string) ([]Token, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	defer f.Close()
	return ParseTokens(f, path)
}

// ParseTokens reads tokens in the format of LoadTokens; source names the input in errors.
func ParseTokens(r io.Reader, source string) ([]Token, error) {
	var out []Token
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		where := fmt.Sprintf("%s:%d", source, n)
		fields := strings.Fields(line)
		if len(fields) < 2 || len(fields) > 3 {
			return nil, fmt.Errorf("%s: want SECRET SCOPE[,SCOPE...] [NAME], got %d fields", where, len(fields))
		}
		name := where
		if len(fields) == 3 {
			name = fields[2]
		}
		var scopes []Scope
		for s := range strings.SplitSeq(fields[1], ",") {
			if s != "" {
				scopes = append(scopes, Scope(s))
			}
		}
		t, err := NewToken(name, fields[0], scopes...)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		out = append(out, t)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", source, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no token in the file", source)
	}
	return out, nil
}

// ErrNoAuth refuses to serve a non-loopback address without tokens.
var ErrNoAuth = errors.New("no auth tokens: serving a non-loopback address without authentication is refused")

// checkTokens refuses two tokens with the same secret: their scopes would be ambiguous.
func checkTokens(tokens []Token) error {
	for i, a := range tokens {
		if len(a.Scopes) == 0 || a.hash == [sha256.Size]byte{} {
			return fmt.Errorf("token %s: not made by NewToken or LoadTokens", a.Name)
		}
		for _, b := range tokens[:i] {
			if a.hash == b.hash {
				return fmt.Errorf("tokens %s and %s have the same secret", b.Name, a.Name)
			}
		}
	}
	return nil
}

// isLoopback reports whether a listen address binds loopback only. Host names other than
// localhost count as not loopback: the check must not depend on DNS.
func isLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// access is who may call a route: anyone (the probes), or a token holding one of scopes.
type access struct {
	public bool
	scopes []Scope
}

var public = access{public: true}

func needs(scopes ...Scope) access { return access{scopes: scopes} }

// route is one endpoint of the API with the scopes it needs.
type route struct {
	pattern string
	access  access
	handler http.HandlerFunc
}

// authorize wraps a handler with the bearer-token check of its route: 401 without a valid
// token, 403 for a token without the scope. With no tokens configured (loopback only, or
// insecure no-auth) every request passes.
func (c *Coordinator) authorize(a access, pattern string, h http.HandlerFunc) http.HandlerFunc {
	if a.public {
		return h
	}
	if len(a.scopes) == 0 {
		panic("coordinator: route " + pattern + " has no scope") // a programming error: every route needs one
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if len(c.cfg.Tokens) == 0 {
			h(w, r)
			return
		}
		secret, ok := bearer(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="pgtrain"`)
			c.writeError(w, r, &apiError{status: http.StatusUnauthorized, msg: "a bearer token is required (Authorization: Bearer TOKEN)"})
			return
		}
		t := c.lookupToken(secret)
		if t == nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="pgtrain", error="invalid_token"`)
			c.writeError(w, r, &apiError{status: http.StatusUnauthorized, msg: "the bearer token is not valid"})
			return
		}
		if !slices.ContainsFunc(a.scopes, func(s Scope) bool { return slices.Contains(t.Scopes, s) }) {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="pgtrain", error="insufficient_scope", scope=%q`, joinScopes(a.scopes)))
			c.log.Info("request refused: token lacks the scope", "method", r.Method, "path", r.URL.Path, "token", t.Name, "needs", joinScopes(a.scopes))
			c.writeError(w, r, &apiError{status: http.StatusForbidden,
				msg: fmt.Sprintf("token %s lacks the scope this route needs (one of: %s)", t.Name, joinScopes(a.scopes))})
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), tokenKey{}, t)))
	}
}

// tokenKey is the request context key of the matched *Token.
type tokenKey struct{}

// mayHold reports whether the caller of r holds scope: always when no tokens are configured
// (the API is open, on loopback or by the operator's choice).
func (c *Coordinator) mayHold(r *http.Request, scope Scope) bool {
	if len(c.cfg.Tokens) == 0 {
		return true
	}
	t, _ := r.Context().Value(tokenKey{}).(*Token)
	return t != nil && slices.Contains(t.Scopes, scope)
}

// lookupToken finds the token whose secret hashes to the same SHA-256. Every token is
// compared, in constant time, whatever matches first.
func (c *Coordinator) lookupToken(secret string) *Token {
	sum := sha256.Sum256([]byte(secret))
	var found *Token
	for i := range c.cfg.Tokens {
		if subtle.ConstantTimeCompare(sum[:], c.cfg.Tokens[i].hash[:]) == 1 {
			found = &c.cfg.Tokens[i]
		}
	}
	return found
}

// bearer extracts the token of an "Authorization: Bearer TOKEN" header.
func bearer(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

func joinScopes(s []Scope) string {
	parts := make([]string, len(s))
	for i, v := range s {
		parts[i] = string(v)
	}
	return strings.Join(parts, ",")
}
