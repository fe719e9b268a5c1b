package coordinator

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/jackc/pgx/v5/pgxpool"
)

// loadOpenAPI parses and validates the embedded document with kin-openapi.
func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(openAPI)
	if err != nil {
		t.Fatalf("loading openapi.json: %v", err)
	}
	if err := doc.Validate(t.Context()); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI 3 document: %v", err)
	}
	return doc
}

// wildcard is a path wildcard of a ServeMux pattern: {name} or {name...}.
var wildcard = regexp.MustCompile(`\{([A-Za-z_][A-Za-z0-9_]*)(\.\.\.)?\}`)

// documentedAs maps the route patterns the document shows under another path: the mux
// cannot match a wildcard with a suffix in one segment, so POST /v1/models/{id} serves
// TF Serving's POST /v1/models/{id}:predict (the handler checks the verb).
var documentedAs = map[string]string{
	"POST /v1/models/{id}": "POST /v1/models/{id}" + predictVerb,
}

// routeKey turns a route pattern ("GET /v1/jobs/{id}") into the document's "get
// /v1/jobs/{id}". A pattern without a method answers every method: it must be documented
// under each one it serves, so it is listed as GET, the least it serves.
func routeKey(pattern string) string {
	if doc, ok := documentedAs[pattern]; ok {
		pattern = doc
	}
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		method, path = http.MethodGet, pattern
	}
	return strings.ToLower(method) + " " + wildcard.ReplaceAllString(path, "{$1}")
}

// Every route of api() is in the OpenAPI document with the scopes it needs, and every
// documented operation is a route: a route added without its documentation (or the other
// way round) fails here.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	documented := map[string][]string{} // "get /v1/jobs" → its x-pgtrain-scopes
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			key := strings.ToLower(method) + " " + path
			raw, ok := op.Extensions["x-pgtrain-scopes"]
			if !ok {
				t.Errorf("%s: no x-pgtrain-scopes", key)
				continue
			}
			var scopes []string
			b, _ := json.Marshal(raw)
			if err := json.Unmarshal(b, &scopes); err != nil {
				t.Errorf("%s: x-pgtrain-scopes %s: %v", key, b, err)
			}
			documented[key] = scopes
			// A public operation says so: no security requirement at all.
			if public := op.Security != nil && len(*op.Security) == 0; public != (len(scopes) == 0) {
				t.Errorf("%s: security %v does not match x-pgtrain-scopes %v", key, op.Security, scopes)
			}
		}
	}
	registered := map[string]bool{}
	for _, rt := range (&Coordinator{}).api() {
		key := routeKey(rt.pattern)
		registered[key] = true
		scopes, ok := documented[key]
		if !ok {
			t.Errorf("route %q is not in openapi.json (as %q)", rt.pattern, key)
			continue
		}
		var want []string
		for _, s := range rt.access.scopes {
			want = append(want, string(s))
		}
		slices.Sort(want)
		slices.Sort(scopes)
		if !slices.Equal(want, scopes) {
			t.Errorf("route %q needs scopes %v; openapi.json says %v", rt.pattern, want, scopes)
		}
	}
	for key := range documented {
		if !registered[key] {
			t.Errorf("openapi.json documents %q, which is no route of api()", key)
		}
	}
}

func TestRouteKey(t *testing.T) {
	tests := []struct{ pattern, want string }{
		{"GET /v1/jobs/{id}", "get /v1/jobs/{id}"},
		{"DELETE /v1/jobs/{id}", "delete /v1/jobs/{id}"},
		{"GET /static/{file...}", "get /static/{file}"},
		{"/dashboard/", "get /dashboard/"},
		{"POST /v1/models/{id}", "post /v1/models/{id}:predict"},
		{"GET /v1/models/{id}", "get /v1/models/{id}"},
	}
	for _, tt := range tests {
		if got := routeKey(tt.pattern); got != tt.want {
			t.Errorf("routeKey(%q) = %q, want %q", tt.pattern, got, tt.want)
		}
	}
}

// The coordinator serves the document to a token with the read scope only, and what it
// lists as a job list is what GET /v1/jobs answers.
func TestOpenAPIServed(t *testing.T) {
	e := newEnv(t)
	tokens := []Token{
		mustToken(t, "reader", "reader-secret-0123456789", ScopeRead),
		mustToken(t, "worker", "worker-secret-0123456789", ScopeWorker),
	}
	c, err := New(t.Context(), Config{Tokens: tokens}, map[string]*pgxpool.Pool{"": e.pool}, e.bus, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	srv := newHTTPTestServer(t, c)
	doc := loadOpenAPI(t)
	for _, tt := range []struct {
		token string
		want  int
	}{{"", http.StatusUnauthorized}, {"worker-secret-0123456789", http.StatusForbidden}, {"reader-secret-0123456789", http.StatusOK}} {
		req := mustRequest(t, http.MethodGet, srv+"/v1/openapi.json", nil)
		if tt.token != "" {
			req.Header.Set("Authorization", "Bearer "+tt.token)
		}
		var got map[string]any
		if status := doJSON(t, req, &got); status != tt.want {
			t.Fatalf("token %q: status %d, want %d", tt.token, status, tt.want)
		}
		if tt.want == http.StatusOK && got["openapi"] != doc.OpenAPI {
			t.Fatalf("served openapi %v, want %s", got["openapi"], doc.OpenAPI)
		}
	}
	req := mustRequest(t, http.MethodGet, srv+"/v1/jobs?limit=5", nil)
	req.Header.Set("Authorization", "Bearer reader-secret-0123456789")
	var list any
	if status := doJSON(t, req, &list); status != http.StatusOK {
		t.Fatalf("GET /v1/jobs: %d", status)
	}
	if err := doc.Components.Schemas["JobList"].Value.VisitJSON(list); err != nil {
		t.Fatalf("GET /v1/jobs answers %v, which is no JobList of openapi.json: %v", list, err)
	}
}
