package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/internal/devenv"
	"pgtrain/internal/pgutil"
)

// harness is the environment every measurement runs in.
type harness struct {
	o       options
	root    string // module root, "" when not run from inside it
	tmp     string
	keep    bool
	pg      *devenv.Postgres
	dsn     string
	pool    *pgxpool.Pool
	pgtrain string
	self    string
	// ceiling is the binary COPY rate of the main table, the denominator of every ratio.
	ceiling float64
}

func newHarness(ctx context.Context, o options) (h *harness, err error) {
	h = &harness{o: o, keep: o.keep}
	defer func() {
		if err != nil {
			h.close()
		}
	}()
	h.root = moduleRoot()
	if h.tmp, err = os.MkdirTemp("", "pgtrain-bench-"); err != nil {
		return nil, err
	}
	// The PostgreSQL server runs as its own user when the harness runs as root.
	if err := os.Chmod(h.tmp, 0o755); err != nil {
		return nil, err
	}
	if h.self, err = os.Executable(); err != nil {
		return nil, err
	}
	if h.pgtrain, err = h.pgtrainBinary(ctx); err != nil {
		return nil, err
	}
	fmt.Println("starting a throwaway PostgreSQL cluster...")
	if h.pg, err = devenv.StartPostgres(ctx, devenv.PostgresOptions{Dir: filepath.Join(h.tmp, "postgres")}); err != nil {
		return nil, err
	}
	h.dsn = h.pg.DSN
	if h.pool, err = pgutil.NewPool(ctx, h.dsn, 4); err != nil {
		return nil, err
	}
	return h, nil
}

func (h *harness) close() {
	if h.pool != nil {
		h.pool.Close()
	}
	if h.pg != nil {
		h.pg.Stop()
	}
	if h.tmp != "" {
		if h.keep {
			fmt.Println("kept", h.tmp)
		} else {
			os.RemoveAll(h.tmp)
		}
	}
}

// pgtrainBinary is --pgtrain, or a fresh build of cmd/pgtrain.
func (h *harness) pgtrainBinary(ctx context.Context) (string, error) {
	if h.o.pgtrain != "" {
		return filepath.Abs(h.o.pgtrain)
	}
	if h.root == "" {
		return "", errors.New("not inside the pgtrain module: give --pgtrain")
	}
	bin := filepath.Join(h.tmp, "pgtrain")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/pgtrain")
	cmd.Dir = h.root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building pgtrain: %w: %s", err, out)
	}
	return bin, nil
}

// moduleRoot walks up from the working directory to the pgtrain module's go.mod.
func moduleRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.HasPrefix(string(b), "module pgtrain\n") {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// run is the whole benchmark, in the order of the issue: ceiling, the usual ways, pgtrain
// end to end, memory at two sizes.
func (h *harness) run(ctx context.Context, o options) (*results, error) {
	started := time.Now()
	fetchers, err := parseInts(o.fetchers)
	if err != nil {
		return nil, fmt.Errorf("--fetchers %w", err)
	}
	memRows := []int{max(o.rows/2, 1000), o.rows * 4}
	if o.memRows != "" {
		if memRows, err = parseInts(o.memRows); err != nil || len(memRows) != 2 {
			return nil, fmt.Errorf("--mem-rows %q: want two sizes", o.memRows)
		}
	}
	res := &results{Rows: int64(o.rows), StartedAt: started.UTC().Format(time.RFC3339)}
	if res.Machine, err = machineFacts(ctx, h); err != nil {
		return nil, err
	}
	py := findPython(ctx, o.python)
	res.Machine.Python = py.describe()

	table := tableName(o.rows)
	step := func(format string, args ...any) {
		fmt.Printf("[%5.0fs] %s\n", time.Since(started).Seconds(), fmt.Sprintf(format, args...))
	}
	step("creating %s (%d rows)", table, o.rows)
	t0 := time.Now()
	if err := createTable(ctx, h.pool, table, o.rows); err != nil {
		return nil, err
	}
	res.TableSeconds = time.Since(t0).Seconds()

	// 1. The ceiling. A first, unrecorded COPY brings the table into the page cache, so
	// that no reader after it pays for a cold start the others do not.
	step("binary COPY ceiling (%d runs after a warm-up)", o.ceilingRuns)
	if _, _, err := h.goBaseline(ctx, "copy", table); err != nil {
		return nil, err
	}
	for range o.ceilingRuns {
		out, rss, err := h.goBaseline(ctx, "copy", table)
		if err != nil {
			return nil, err
		}
		if out.Rows != int64(o.rows) {
			return nil, fmt.Errorf("COPY returned %d rows, want %d", out.Rows, o.rows)
		}
		res.Ceiling.Runs = append(res.Ceiling.Runs, newRate(out.Rows, out.Seconds, 0))
		res.Ceiling.PGCPUSeconds = append(res.Ceiling.PGCPUSeconds, out.PGCPUSeconds)
		res.Ceiling.Bytes = out.Bytes
		res.Ceiling.PeakRSSMB = rss
	}
	res.Ceiling.RowsPerS = medianRate(res.Ceiling.Runs)
	h.ceiling = res.Ceiling.RowsPerS
	res.CopyRowsPerS = h.ceiling

	// Planning beside one binary COPY of the planned columns, at this size and at 4×.
	for _, n := range []int{o.rows, 4 * o.rows} {
		if o.skip["planning"] {
			break
		}
		pt := tableName(n)
		if n != o.rows {
			step("creating %s (%d rows)", pt, n)
			if err := createTable(ctx, h.pool, pt, n); err != nil {
				return nil, err
			}
		}
		step("planning %d rows beside a binary COPY (%d runs)", n, o.ceilingRuns)
		pr, err := measurePlanning(ctx, h.dsn, pt, o.ceilingRuns)
		if err != nil {
			return nil, err
		}
		step("  %s", pr)
		res.Planning = append(res.Planning, pr)
		if n != o.rows {
			if err := dropTable(ctx, h.pool, pt); err != nil {
				return nil, err
			}
		}
	}

	// PostgreSQL's side of the first epoch: the fetchers' read pattern alone.
	for _, name := range []string{"keyset", "keyset-float4", "range-copy"} {
		step("diagnostic: %s pages", name)
		out, _, err := h.goBaseline(ctx, name, table)
		if err != nil {
			return nil, err
		}
		if out.Rows != int64(o.rows) {
			return nil, fmt.Errorf("%s read %d rows, want %d", name, out.Rows, o.rows)
		}
		r := newRate(out.Rows, out.Seconds, h.ceiling)
		res.Ceiling.Keyset = append(res.Ceiling.Keyset, baselineResult{Name: name, Lang: "go", Method: name, Rows: out.Rows,
			Seconds: out.Seconds, RowsPerS: r.RowsPerS, RatioToCeiling: r.RatioToCeiling, PGCPUSeconds: out.PGCPUSeconds})
	}

	// 2. The usual ways.
	for _, name := range []string{"fetchall", "cursor", "csv"} {
		if o.skip["baselines"] {
			break
		}
		step("Go baseline %s", name)
		b, err := h.baselineResult(ctx, "go", name, table, int64(o.rows))
		if err != nil {
			return nil, err
		}
		res.Baselines = append(res.Baselines, b)
	}
	for _, name := range []string{"fetchall", "cursor", "csv"} {
		if !py.ok || o.skip["python"] || o.skip["baselines"] {
			break
		}
		step("Python baseline %s", name)
		b, err := h.pythonBaseline(ctx, py, name, table, int64(o.rows))
		if err != nil {
			return nil, err
		}
		res.Baselines = append(res.Baselines, b)
	}
	for _, b := range res.Baselines {
		if b.RowsPerS > res.BestBaselineRowsPerS {
			res.BestBaselineRowsPerS, res.BestBaseline = b.RowsPerS, b.Name
		}
	}

	// 3. pgtrain end to end; 5. the time to the first batch is measured in every run.
	for _, model := range []string{modelNoop, modelMLP} {
		epochs := o.noopEpochs
		if model == modelMLP && o.skip["mlp"] {
			continue
		}
		if model == modelMLP {
			epochs = o.mlpEpochs
		}
		for _, f := range fetchers {
			cfg := e2eConfig{Model: model, Fetchers: f, Preprocessors: o.preprocessors, Epochs: epochs}
			step("pgtrain end to end: %s", cfg)
			r, err := runE2E(ctx, h, table, int64(o.rows), cfg)
			if err != nil {
				return nil, err
			}
			step("  first epoch %.0f rows/s (%.2f× COPY), replay %.0f rows/s (%.2f× COPY), first batch after %.2fs",
				r.FirstEpoch.RowsPerS, r.FirstEpoch.RatioToCeiling, r.ReplayEpochs.RowsPerS, r.ReplayEpochs.RatioToCeiling, r.TimeToFirstBatch)
			res.E2E = append(res.E2E, r)
		}
	}
	// A tuning variant beside the defaults: the same run with other runtime settings.
	if o.variantEnv != "" {
		f := 2
		if !slices.Contains(fetchers, f) {
			f = fetchers[0]
		}
		cfg := e2eConfig{Model: modelNoop, Fetchers: f, Preprocessors: o.preprocessors, Epochs: o.noopEpochs, Env: o.variantEnv}
		step("pgtrain end to end, tuning variant: %s", cfg)
		r, err := runE2E(ctx, h, table, int64(o.rows), cfg)
		if err != nil {
			return nil, err
		}
		step("  first epoch %.0f rows/s (%.2f× COPY), replay %.0f rows/s (%.2f× COPY), first batch after %.2fs",
			r.FirstEpoch.RowsPerS, r.FirstEpoch.RatioToCeiling, r.ReplayEpochs.RowsPerS, r.ReplayEpochs.RatioToCeiling, r.TimeToFirstBatch)
		res.E2E = append(res.E2E, r)
	}
	res.pickHeadlines()

	// 6. Prediction with a trained model, beside the two COPY rates of the same run: the
	// ceiling in (section 1) and COPY FROM out.
	if !o.skip["prediction"] {
		step("binary COPY FROM STDIN of %d (key, value) rows (%d runs)", o.rows, o.ceilingRuns)
		pr := &predictionResult{}
		for range o.ceilingRuns {
			out, _, err := h.goBaseline(ctx, "copy-from", table)
			if err != nil {
				return nil, err
			}
			if out.Rows != int64(o.rows) {
				return nil, fmt.Errorf("COPY FROM wrote %d rows, want %d", out.Rows, o.rows)
			}
			pr.CopyFrom = append(pr.CopyFrom, newRate(out.Rows, out.Seconds, 0))
		}
		f := 2
		if !slices.Contains(fetchers, f) {
			f = fetchers[0]
		}
		// The model is trained for one epoch: its weights do not change the forward pass's cost.
		cfg := e2eConfig{Model: modelMLP, Fetchers: f, Preprocessors: o.preprocessors, Epochs: 1}
		step("prediction with %d scorer(s) after training: %s", o.scorers, cfg)
		r, err := runPrediction(ctx, h, table, int64(o.rows), cfg, o.scorers, o.compare, o.compareWhole)
		if err != nil {
			return nil, err
		}
		r.CopyFrom, r.CopyFromRowsPerS = pr.CopyFrom, medianRate(pr.CopyFrom)
		r.SlowerCopyRowsPerS = min(h.ceiling, r.CopyFromRowsPerS)
		r.Predict.RatioToCeiling = ratio(r.Predict.RowsPerS, h.ceiling)
		step("  prediction %.0f rows/s (%.2f× the slower of COPY in %.0f and COPY FROM out %.0f rows/s), planned in %.2f s",
			r.Predict.RowsPerS, ratio(r.Predict.RowsPerS, r.SlowerCopyRowsPerS), h.ceiling, r.CopyFromRowsPerS, r.PlanSeconds)
		if ev := r.Evaluation; ev != nil {
			step("  evaluation (no output table) %.0f rows/s, PostgreSQL CPU %.1f s (the prediction's %.1f s)", ev.Predict.RowsPerS, ev.PGCPUSeconds, r.PredictPGCPUSeconds)
		}
		for _, c := range r.Compared {
			step("  scorers of %s: %.0f rows/s (%.2f× the slower COPY), planned in %.2f s, PostgreSQL CPU %.1f s, scorers' CPU %.1f s",
				c.Scorer, c.Predict.RowsPerS, ratio(c.Predict.RowsPerS, r.SlowerCopyRowsPerS), c.PlanSeconds, c.PGCPUSeconds, c.ScorerCPUSeconds)
		}
		res.Prediction = r
		res.PredictionRowsPerS = r.Predict.RowsPerS
		res.CopyFromRowsPerS = r.CopyFromRowsPerS
	}

	// 7. A sweep of 4 variants against the 4 variants as separate jobs, one trainer each.
	if !o.skip["sweep"] {
		f := 2
		if !slices.Contains(fetchers, f) {
			f = fetchers[0]
		}
		cfg := e2eConfig{Model: modelMLP, Fetchers: f, Preprocessors: o.preprocessors, Epochs: o.sweepEpochs, Trainers: len(sweepVariants)}
		step("a sweep of %d variants against %d separate jobs: %s", len(sweepVariants), len(sweepVariants), cfg)
		r, err := runSweepBench(ctx, h, table, int64(o.rows), cfg)
		if err != nil {
			return nil, err
		}
		step("  sweep: %d rows read from PostgreSQL in %.1f s; separate jobs: %d rows in %.1f s; same losses: %v",
			r.Sweep.RowsRead, r.Sweep.WallSeconds, r.Separate.RowsRead, r.Separate.WallSeconds, r.SameLoss)
		res.Sweep = r
	}

	// 4. Memory at two table sizes: every role, and the Go baselines beside them.
	res.PeakRSSMB = map[string]map[string]float64{}
	memFetchers := 2
	if !slices.Contains(fetchers, memFetchers) {
		memFetchers = fetchers[0]
	}
	for _, n := range memRows {
		if o.skip["memory"] {
			break
		}
		mt := tableName(n)
		if n != o.rows {
			step("creating %s (%d rows)", mt, n)
			if err := createTable(ctx, h.pool, mt, n); err != nil {
				return nil, err
			}
		}
		// A peak RSS is a maximum over the moments a process lives through, and a Go
		// process's is set by where its garbage collections fall among megabyte-sized page
		// buffers: the same run twice differs by tens of percent. Each size is run the same
		// number of times and the peak is the largest seen.
		m := memoryResult{Rows: n, PeakRSSMB: map[string]float64{}}
		for i := range o.memRepeats {
			cfg := e2eConfig{Model: modelNoop, Fetchers: memFetchers, Preprocessors: o.preprocessors, Epochs: 2}
			step("memory at %d rows, run %d of %d: %s", n, i+1, o.memRepeats, cfg)
			r, err := runE2E(ctx, h, mt, int64(n), cfg)
			if err != nil {
				return nil, err
			}
			m.Runs = append(m.Runs, r)
			for role, mb := range r.PeakRSSMB {
				m.PeakRSSMB[role] = max(m.PeakRSSMB[role], mb)
			}
		}
		for _, name := range []string{"fetchall", "cursor", "csv"} {
			step("memory at %d rows: Go baseline %s", n, name)
			b, err := h.baselineResult(ctx, "go", name, mt, int64(n))
			if err != nil {
				return nil, err
			}
			m.Baselines = append(m.Baselines, b)
		}
		res.Memory = append(res.Memory, m)
		res.PeakRSSMB[strconv.Itoa(n)] = m.PeakRSSMB
		if n != o.rows {
			if err := dropTable(ctx, h.pool, mt); err != nil {
				return nil, err
			}
		}
	}
	res.judge()
	res.Machine.LoadAvgEnd = loadAvg()
	res.Seconds = time.Since(started).Seconds()
	return res, nil
}

// goBaseline runs one Go baseline in its own process.
func (h *harness) goBaseline(ctx context.Context, name, table string) (baselineOutput, float64, error) {
	var out baselineOutput
	before := pgCPUSeconds(h.pg.DataDir)
	rss, err := runJSON(ctx, 20*time.Minute, &out, h.self, "baseline", "--name", name, "--dsn", h.dsn, "--table", table)
	out.PGCPUSeconds = settledPGCPU(h.pg.DataDir) - before
	return out, rss, err
}

func (h *harness) baselineResult(ctx context.Context, lang, method, table string, rows int64) (baselineResult, error) {
	var out baselineOutput
	var rss float64
	var err error
	if lang == "go" {
		out, rss, err = h.goBaseline(ctx, method, table)
	} else {
		return baselineResult{}, fmt.Errorf("unknown language %q", lang)
	}
	if err != nil {
		return baselineResult{}, err
	}
	return h.checkBaseline(lang, method, out, rss, rows)
}

func (h *harness) checkBaseline(lang, method string, out baselineOutput, rss float64, rows int64) (baselineResult, error) {
	if out.Rows != rows {
		return baselineResult{}, fmt.Errorf("%s baseline %s read %d rows, want %d", lang, method, out.Rows, rows)
	}
	if want := numFeatures + len(categories); out.Width != want {
		return baselineResult{}, fmt.Errorf("%s baseline %s made %d feature columns, want %d", lang, method, out.Width, want)
	}
	r := newRate(out.Rows, out.Seconds, h.ceiling)
	return baselineResult{
		Name: lang + "/" + method, Lang: lang, Method: method, Rows: out.Rows, Seconds: out.Seconds,
		RowsPerS: r.RowsPerS, RatioToCeiling: r.RatioToCeiling, PeakRSSMB: rss,
		Width: out.Width, XSum: out.XSum, YSum: out.YSum, PGCPUSeconds: out.PGCPUSeconds,
	}, nil
}

func medianRate(rs []rate) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = r.RowsPerS
	}
	slices.Sort(v)
	if len(v) == 0 {
		return 0
	}
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}
