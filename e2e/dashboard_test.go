package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/coordinator"
	"pgtrain/coordinator/dashboard"
	"pgtrain/internal/bus"
	"pgtrain/internal/demo"
	"pgtrain/internal/local"
	"pgtrain/internal/testenv"
	"pgtrain/messages"
	"pgtrain/trainer"
)

// screenshotEnv names a file the dashboard test copies its final screenshot to (make
// dashboard-screenshot writes docs/dashboard.png with it).
const screenshotEnv = "PGTRAIN_DASHBOARD_SCREENSHOT"

// chromium finds a Chromium or Chrome binary, or "".
func chromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	return ""
}

// pageState is what the test reads from the dashboard's DOM.
type pageState struct {
	Login      bool     `json:"login"`
	LoginError string   `json:"loginError"`
	Main       bool     `json:"main"`
	Conn       string   `json:"conn"`
	JobID      string   `json:"jobID"`
	JobState   string   `json:"jobState"`
	Loss       int      `json:"loss"`
	ValLoss    int      `json:"valLoss"`
	Ranges     []string `json:"ranges"`
	Workers    []string `json:"workers"`
	Rate       string   `json:"rate"`
	Streams    []string `json:"streams"`
	Hash       string   `json:"hash"`
	HasToken   bool     `json:"hasToken"`
}

const readPage = `(() => {
	const q = (s) => document.querySelector(s);
	const all = (s) => [...document.querySelectorAll(s)];
	return {
		login: !q("#login").hidden, loginError: q("#login-error").textContent,
		main: !q("#main").hidden, conn: q("#conn").className + ": " + q("#conn").textContent,
		jobID: q("#job-id").textContent, jobState: q("#job-state").textContent,
		loss: all('#loss-chart circle[data-series="loss"]').length,
		valLoss: all('#loss-chart circle[data-series="val_loss"]').length,
		ranges: all("#strip .range").map((e) => e.dataset.state),
		workers: all("#strip .range .worker").map((e) => e.textContent),
		rate: q("#rate-trained").textContent,
		streams: all("#bus .meter").map((e) => e.dataset.stream),
		hash: location.hash, hasToken: sessionStorage.getItem("pgtrain.token") !== null,
	};
})()`

// The dashboard in a real Chromium: the page asks for a token, takes one from the URL
// fragment, then follows the demo job as it trains. Its loss curve gains a point per epoch,
// its ranges all turn trained, and it shows the throughput and the bus. A screenshot of the
// finished job is saved under the test's temp dir.
func TestDashboard(t *testing.T) {
	browser := chromium()
	if browser == "" && os.Getenv(screenshotEnv) != "" {
		t.Fatalf("%s asks for a screenshot, and there is no chromium binary on PATH", screenshotEnv)
	}
	if browser == "" {
		t.Skip("no chromium binary on PATH (Debian's chromium package; .ci/run installs it): the dashboard test needs a real browser")
	}
	pool, _ := testenv.Pool(t)
	natsURL := testenv.NATS(t)
	ctx := context.Background()
	const rows, epochs = 40_000, 4
	if err := demo.CreateTable(ctx, pool, rows); err != nil {
		t.Fatal(err)
	}
	// The demo job, in ranges small enough that the strip has a few of them.
	var spec map[string]any
	if err := json.Unmarshal(demo.Spec(epochs), &spec); err != nil {
		t.Fatal(err)
	}
	spec["range_rows"] = 2500
	body, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := local.Start(ctx, local.Options{
		Sources:       map[string]*pgxpool.Pool{"": pool},
		NATSURL:       natsURL,
		Fetchers:      3,
		Preprocessors: 2,
		Trainer:       true,
		// The page polls every second: an epoch of several seconds (140 steps of at least
		// 25 ms) lets it draw each epoch's point before the next one comes.
		TrainerCfg:  trainer.Config{OutDir: t.TempDir(), StepDelay: 25 * time.Millisecond},
		Coordinator: coordinator.Config{Window: 4},
		Limits:      bus.Limits{ReadyMaxBytes: 256 << 20},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Stop()

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.WindowSize(1280, 1000))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("starting %s: %v", browser, err)
	}
	// Every script error and every Content-Security-Policy violation fails the test.
	var (
		mu       sync.Mutex
		problems []string
	)
	consoleDone := make(chan struct{})
	console := chromedp.Console(bctx)
	go func() {
		defer close(consoleDone)
		for m, err := range console {
			if err != nil {
				return
			}
			if m.IsException() || m.Source == "security" || (m.Type == chromedp.ConsoleError && m.Source != "network") {
				mu.Lock()
				problems = append(problems, fmt.Sprintf("%s:%d %s", m.URL, m.Line+1, m))
				mu.Unlock()
			}
		}
	}()
	defer func() {
		cancelBrowser()
		<-consoleDone
	}()
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		actx, cancel := context.WithTimeout(bctx, time.Minute)
		defer cancel()
		if err := chromedp.Do(actx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	read := func() pageState {
		t.Helper()
		actx, cancel := context.WithTimeout(bctx, time.Minute)
		defer cancel()
		st, err := chromedp.Run(actx, chromedp.Evaluate[pageState](readPage))
		if err != nil {
			t.Fatalf("reading the page: %v", err)
		}
		return st
	}
	waitPage := func(what string, cond func(pageState) bool) pageState {
		t.Helper()
		var st pageState
		defer func() {
			if t.Failed() {
				t.Logf("the page shows %+v", st)
			}
		}()
		testenv.Eventually(t, time.Minute, what, func() bool {
			st = read()
			return cond(st)
		})
		return st
	}
	ui := cl.URL() + dashboard.Path

	// Without a token the page asks for one; a wrong one is refused with the reason.
	run("opening the page", chromedp.Navigate(ui))
	waitPage("the token form", func(s pageState) bool { return s.Login && !s.Main })
	run("entering a wrong token",
		chromedp.SendKeys(chromedp.ID("token"), "not-the-token-0123456789"),
		chromedp.Click(chromedp.CSS(`#login button[type="submit"]`)))
	st := waitPage("the refusal", func(s pageState) bool { return s.Login && s.LoginError != "" })
	if !strings.Contains(st.LoginError, "not valid") || st.HasToken {
		t.Fatalf("after a wrong token: %+v", st)
	}
	// The link `pgtrain up` prints: the token in the fragment, which the page moves to
	// sessionStorage and takes out of the address.
	run("opening the link with the token", chromedp.Navigate(ui+"#token="+cl.UserToken()))
	st = waitPage("the dashboard", func(s pageState) bool { return s.Main && len(s.Streams) == 2 })
	if st.Login || strings.Contains(st.Hash, "token") || !st.HasToken || !slices.Equal(st.Streams, []string{"RAW", "READY"}) {
		t.Fatalf("after the link: %+v", st)
	}

	job, err := cl.Client.Submit(ctx, body)
	if err != nil {
		t.Fatal(err)
	}
	var (
		counts    []int // the loss curve's point counts, in the order the page showed them
		notYet    = map[string]bool{}
		workers   = map[string]bool{}
		sawRate   bool
		running   []byte // a screenshot of the job in flight
		final     pageState
		rateValue = regexp.MustCompile(`^[1-9][0-9,]* rows/s$`)
	)
	testenv.Eventually(t, 5*time.Minute, "the page to show the finished job", func() bool {
		select {
		case err := <-cl.Err():
			t.Fatalf("a role failed: %v", err)
		default:
		}
		s := read()
		// The job's results, read after the page: the page cannot be ahead of them.
		js, err := cl.Client.Job(ctx, job.ID)
		if err != nil {
			t.Fatal(err)
		}
		if js.State == messages.JobFailed {
			t.Fatalf("job failed: %s", js.Error)
		}
		if s.JobID != job.ID {
			return false
		}
		if s.Loss > len(js.Results) || s.ValLoss > s.Loss {
			t.Fatalf("the page shows %d loss and %d val_loss points with %d epochs done", s.Loss, s.ValLoss, len(js.Results))
		}
		if len(counts) == 0 || counts[len(counts)-1] != s.Loss {
			counts = append(counts, s.Loss)
		}
		for _, r := range s.Ranges {
			if r != messages.RangeTrained {
				notYet[r] = true
			}
		}
		for _, w := range s.Workers {
			workers[w] = true
		}
		sawRate = sawRate || rateValue.MatchString(s.Rate)
		// A picture of the job in flight: curves drawn, ranges in several states.
		if running == nil && s.Loss >= 2 && rateValue.MatchString(s.Rate) && slices.Contains(s.Ranges, messages.RangeTrained) &&
			slices.ContainsFunc(s.Ranges, func(r string) bool { return r != messages.RangeTrained }) {
			running = screenshot(bctx, t)
		}
		final = s
		return s.JobState == messages.JobDone && s.Loss == epochs && len(s.Ranges) == js.Ranges &&
			!slices.ContainsFunc(s.Ranges, func(r string) bool { return r != messages.RangeTrained })
	})
	t.Logf("loss points as the page showed them: %v; range states seen before trained: %v; fetchers shown: %v",
		counts, notYet, workers)
	// A point per epoch, one epoch at a time: 0, 1, 2, ... epochs.
	for i, n := range counts {
		if n != i {
			t.Fatalf("the loss curve went through %v points, want one more per epoch up to %d", counts, epochs)
		}
	}
	if final.ValLoss != epochs {
		t.Errorf("%d val_loss points, want %d", final.ValLoss, epochs)
	}
	if len(notYet) == 0 {
		t.Error("the strip never showed a range that was not trained yet")
	}
	for w := range workers {
		if !strings.HasPrefix(w, "fetcher-") {
			t.Errorf("the strip names %q as a range's holder, want a fetcher's id", w)
		}
	}
	if !sawRate {
		t.Error("the page never showed a training throughput in rows/s")
	}
	if !strings.HasPrefix(final.Conn, "conn:") {
		t.Errorf("connection line %q, want no error", final.Conn)
	}

	dir := t.TempDir()
	shots := map[string][]byte{"dashboard.png": screenshot(bctx, t), "dashboard-running.png": running}
	for name, png := range shots {
		if png == nil {
			t.Logf("no screenshot %s: the page was never caught mid-epoch", name)
			continue
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s (%d bytes)", path, len(png))
	}
	// The job in flight shows more than the finished one, when the page was caught so.
	if dst := os.Getenv(screenshotEnv); dst != "" {
		png := running
		if png == nil {
			png = shots["dashboard.png"]
		}
		if err := os.WriteFile(dst, png, 0o644); err != nil {
			t.Fatalf("%s: %v", screenshotEnv, err)
		}
		t.Logf("screenshot copied to %s", dst)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Errorf("browser console: %s", p)
	}
}

// screenshot takes a PNG of the whole page.
func screenshot(ctx context.Context, t *testing.T) []byte {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	return png
}
