package dashboard

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("GET "+Path, Handler())
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for _, tc := range []struct {
		name, path, wantType, wantBody string
		wantStatus                     int
	}{
		{name: "page", path: "/ui/", wantStatus: 200, wantType: "text/html", wantBody: `<script src="app.js" defer></script>`},
		{name: "script", path: "/ui/app.js", wantStatus: 200, wantType: "text/javascript", wantBody: "Authorization"},
		{name: "style", path: "/ui/style.css", wantStatus: 200, wantType: "text/css", wantBody: ".strip"},
		{name: "missing", path: "/ui/secret.txt", wantStatus: 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Get(srv.URL + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			if !strings.HasPrefix(resp.Header.Get("Content-Type"), tc.wantType) {
				t.Errorf("Content-Type %q, want %s", resp.Header.Get("Content-Type"), tc.wantType)
			}
			if !strings.Contains(string(body), tc.wantBody) {
				t.Errorf("body lacks %q", tc.wantBody)
			}
			csp := resp.Header.Get("Content-Security-Policy")
			if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
				t.Errorf("Content-Security-Policy %q, want scripts from the page's origin only", csp)
			}
			if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Referrer-Policy") != "no-referrer" {
				t.Errorf("headers %v", resp.Header)
			}
		})
	}
}

// The policy forbids inline script and style and other origins; a file that used them
// would break in the browser, so they are refused here already.
func TestFilesAreSelfContained(t *testing.T) {
	forbidden := map[string]*regexp.Regexp{
		"another origin":    regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/`),
		"an inline script":  regexp.MustCompile(`(?i)<script(\s[^>]*)?>[^<]+</script>|<script>`),
		"an inline style":   regexp.MustCompile(`(?i)<style|\sstyle="`),
		"an event handler":  regexp.MustCompile(`(?i)\son[a-z]+="`),
		"a javascript: URL": regexp.MustCompile(`(?i)javascript:`),
		"parsed HTML":       regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(`),
	}
	err := fs.WalkDir(static, "static", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := static.ReadFile(path)
		if err != nil {
			return err
		}
		// The SVG namespace is a name, not a place the page loads from.
		text := strings.ReplaceAll(string(b), "http://www.w3.org/2000/svg", "")
		for what, re := range forbidden {
			if m := re.FindString(text); m != "" {
				t.Errorf("%s has %s: %q", path, what, m)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
