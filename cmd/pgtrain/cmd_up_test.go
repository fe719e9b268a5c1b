package main

import (
	"bufio"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"pgtrain/coordinator/dashboard"
	"pgtrain/internal/testenv"
)

func TestUpBannerMasksPasswords(t *testing.T) {
	got := upBanner("http://127.0.0.1:8080", "nats://alice:pa%/#?@ss@127.0.0.1:4222", "/data/user.token")
	if strings.Contains(got, "pa%") || strings.Contains(got, "ss@127") {
		t.Fatalf("the banner shows the NATS password:\n%s", got)
	}
	if !strings.Contains(got, "nats://alice:xxxxx@127.0.0.1:4222") || !strings.Contains(got, "http://127.0.0.1:8080") {
		t.Fatalf("the banner lost where things listen:\n%s", got)
	}
}

func TestDashboardLink(t *testing.T) {
	tests := []struct {
		name, token string
	}{
		{name: "generated token", token: "Zm9vYmFyLWJhei0wMTIzNDU2Nzg5X2FiY2RlZmdoaWo"},
		{name: "token with URL characters", token: "a+b/c=d&e#f%g?h"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			link := dashboardLink("http://127.0.0.1:8080", tt.token)
			u, err := url.Parse(link)
			if err != nil {
				t.Fatal(err)
			}
			if u.Path != dashboard.Path || u.RawQuery != "" {
				t.Fatalf("link %q: want the page %s with no query string (it would reach the logs)", link, dashboard.Path)
			}
			frag, err := url.ParseQuery(u.EscapedFragment())
			if err != nil || frag.Get("token") != tt.token {
				t.Fatalf("link %q: fragment %q gives token %q, %v; want %q", link, u.EscapedFragment(), frag.Get("token"), err, tt.token)
			}
		})
	}
}

// `pgtrain up` prints where the dashboard is and writes a signed-in link to a file only its
// owner reads, never the token to the terminal; the link works: the page loads, and the
// token in its fragment is the user token, which the API accepts.
func TestUpWritesTheDashboardLink(t *testing.T) {
	bin, err := testenv.BuildBinary(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "up", "--listen", "127.0.0.1:0", "--fetchers", "1", "--preprocessors", "1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("pgtrain up after an interrupt: %v", err)
			}
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
			t.Error("pgtrain up did not stop within a minute of an interrupt")
		}
	}()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	var banner []string
	var page, linkFile, tokenFile string
	deadline := time.After(2 * time.Minute)
	for linkFile == "" {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatal("pgtrain up ended before printing the dashboard line")
			}
			banner = append(banner, line)
			if _, scoped, ok := strings.Cut(line, "a user token (scopes "); ok {
				_, tokenFile, _ = strings.Cut(scoped, ") is in ")
			}
			if rest, ok := strings.CutPrefix(line, "dashboard: "); ok {
				var where string
				page, where, _ = strings.Cut(rest, " ")
				_, linkFile, _ = strings.Cut(strings.TrimSuffix(where, ")"), "with the token is in ")
				if linkFile == "" {
					t.Fatalf("the dashboard line names no file with the link: %q", line)
				}
			}
		case <-deadline:
			t.Fatal("no dashboard line from pgtrain up within 2 minutes")
		}
	}
	go func() { // keep reading so that up never blocks on its output
		for range lines {
		}
	}()
	secret, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatalf("the user token file %q: %v", tokenFile, err)
	}
	if token := strings.TrimSpace(string(secret)); token == "" || strings.Contains(strings.Join(banner, "\n"), token) {
		t.Fatalf("the banner shows the user token (or the token file is empty):\n%s", strings.Join(banner, "\n"))
	}
	linkBytes, err := os.ReadFile(linkFile)
	if err != nil {
		t.Fatalf("the dashboard link file %q: %v", linkFile, err)
	}
	if info, err := os.Stat(linkFile); err != nil {
		t.Fatal(err)
	} else if info.Mode().Perm() != 0o600 {
		t.Fatalf("the dashboard link file %q has mode %v; want 0600", linkFile, info.Mode().Perm())
	}
	link := strings.TrimSpace(string(linkBytes))
	if !strings.HasPrefix(link, page) {
		t.Fatalf("the signed-in link %q is not on the page %q the banner names", strings.SplitN(link, "#", 2)[0], page)
	}
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	frag, _ := url.ParseQuery(u.EscapedFragment())
	if token := frag.Get("token"); token != strings.TrimSpace(string(secret)) || u.RawQuery != "" {
		t.Fatalf("link %q: want the user token in the fragment only", link)
	}
	ui, err := http.Get(link) // the client leaves the fragment out, as a browser does
	if err != nil {
		t.Fatal(err)
	}
	ui.Body.Close()
	if ui.StatusCode != http.StatusOK || !strings.HasPrefix(ui.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("the dashboard page: %s, %s", ui.Status, ui.Header.Get("Content-Type"))
	}
	req, err := http.NewRequest(http.MethodGet, u.Scheme+"://"+u.Host+"/v1/jobs", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+frag.Get("token"))
	jobs, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	jobs.Body.Close()
	if jobs.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/jobs with the link's token: %s", jobs.Status)
	}
}
