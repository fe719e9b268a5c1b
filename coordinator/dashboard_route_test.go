package coordinator

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// The dashboard's files are served without a token by a coordinator that requires tokens
// everywhere else; /ui leads to /ui/.
func TestDashboardRoute(t *testing.T) {
	e := newEnv(t)
	_, srv := authServer(t, e)
	tests := []struct {
		name, path, wantType, wantBody string
		wantStatus                     int
	}{
		{name: "page", path: "/ui/", wantStatus: http.StatusOK, wantType: "text/html", wantBody: "<title>pgtrain</title>"},
		{name: "without the slash", path: "/ui", wantStatus: http.StatusOK, wantType: "text/html", wantBody: "<title>pgtrain</title>"},
		{name: "script", path: "/ui/app.js", wantStatus: http.StatusOK, wantType: "text/javascript", wantBody: "sessionStorage"},
		{name: "the API still needs a token", path: "/v1/jobs", wantStatus: http.StatusUnauthorized, wantType: "application/json", wantBody: "bearer token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Get(srv + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus || !strings.HasPrefix(resp.Header.Get("Content-Type"), tt.wantType) ||
				!strings.Contains(string(body), tt.wantBody) {
				t.Fatalf("%s, %s, body %.200q; want %d, %s with %q", resp.Status, resp.Header.Get("Content-Type"), body, tt.wantStatus, tt.wantType, tt.wantBody)
			}
			if tt.wantStatus == http.StatusOK && !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") {
				t.Fatalf("no Content-Security-Policy on the dashboard: %v", resp.Header)
			}
		})
	}
}
