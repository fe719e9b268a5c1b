package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/nats-io/nats-server/v2/server"

	"pgtrain/internal/bus"
	"pgtrain/messages"
)

// results is everything one run measured; it is written as results.json and results.md.
type results struct {
	// The top-level figures the issue asks for.
	Rows                  int64   `json:"rows"`
	CopyRowsPerS          float64 `json:"copy_rows_per_s"`
	E2EFirstEpochRowsPerS float64 `json:"e2e_first_epoch_rows_per_s"`
	E2EReplayRowsPerS     float64 `json:"e2e_replay_rows_per_s"`
	BestBaselineRowsPerS  float64 `json:"best_baseline_rows_per_s"`
	// PredictionRowsPerS is batch prediction from the table to the output table, and
	// CopyFromRowsPerS the binary COPY FROM of as many rows that it is judged beside.
	PredictionRowsPerS float64 `json:"prediction_rows_per_s,omitempty"`
	CopyFromRowsPerS   float64 `json:"copy_from_rows_per_s,omitempty"`
	// PeakRSSMB is role → MB for each table size of the memory runs (keyed by its rows).
	PeakRSSMB map[string]map[string]float64 `json:"peak_rss_mb"`

	BestBaseline string `json:"best_baseline"`
	// E2EHeadline names the run the two e2e figures above come from: the no-op model run
	// with the fastest first epoch among the fetcher counts.
	E2EHeadline              string  `json:"e2e_headline_run"`
	E2EMLPFirstEpochRowsPerS float64 `json:"e2e_mlp_first_epoch_rows_per_s"`
	E2EMLPReplayRowsPerS     float64 `json:"e2e_mlp_replay_rows_per_s"`
	TimeToFirstBatchS        float64 `json:"time_to_first_batch_s"`
	// PlanToCopy is, per table size (keyed by its rows), the median planning time over the
	// median binary COPY of the planned columns.
	PlanToCopy map[string]float64 `json:"plan_to_copy"`
	// Ratios holds every ratio the targets judge, and a few beside them, by a stable key.
	Ratios map[string]float64 `json:"ratios"`

	Command      string           `json:"command"`
	StartedAt    string           `json:"started_at"`
	Seconds      float64          `json:"seconds"`
	TableSeconds float64          `json:"table_seconds"`
	Machine      machine          `json:"machine"`
	Ceiling      ceilingResult    `json:"ceiling"`
	Baselines    []baselineResult `json:"baselines"`
	E2E          []*e2eResult     `json:"e2e"`
	Memory       []memoryResult   `json:"memory"`
	Planning     []*planningRun   `json:"planning"`
	Targets      []target         `json:"targets"`

	// Prediction is section 6, absent when it was skipped.
	Prediction *predictionResult `json:"prediction,omitempty"`
	// Sweep is section 7, absent when it was skipped; SweepRowsRead and SeparateRowsRead
	// are the rows read from PostgreSQL by the sweep and by its variants as separate jobs,
	// SweepWallSeconds and SeparateWallSeconds their wall times.
	Sweep               *sweepResult `json:"sweep,omitempty"`
	SweepRowsRead       int64        `json:"sweep_rows_read,omitempty"`
	SeparateRowsRead    int64        `json:"separate_jobs_rows_read,omitempty"`
	SweepWallSeconds    float64      `json:"sweep_wall_seconds,omitempty"`
	SeparateWallSeconds float64      `json:"separate_jobs_wall_seconds,omitempty"`
}

type machine struct {
	Cores        int     `json:"cores"`
	CPU          string  `json:"cpu"`
	MemoryGB     float64 `json:"memory_gb"`
	Kernel       string  `json:"kernel"`
	Go           string  `json:"go"`
	PostgreSQL   string  `json:"postgresql"`
	NATSServer   string  `json:"nats_server"`
	NATSClient   string  `json:"nats_go"`
	Pgx          string  `json:"pgx"`
	Python       string  `json:"python"`
	LoadAvgStart string  `json:"load_avg_start"`
	LoadAvgEnd   string  `json:"load_avg_end"`
}

type ceilingResult struct {
	RowsPerS     float64   `json:"rows_per_s"`
	Runs         []rate    `json:"runs"`
	PGCPUSeconds []float64 `json:"postgres_cpu_seconds"`
	// Keyset is the fetchers' read pattern (keyset pages, binary results) into a reader that
	// decodes nothing: with the numbers cast to float8, and as stored, which is how the
	// fetchers read real columns.
	Keyset    []baselineResult `json:"keyset_pages"`
	Bytes     int64            `json:"bytes"`
	PeakRSSMB float64          `json:"peak_rss_mb"`
}

type baselineResult struct {
	Name           string  `json:"name"`
	Lang           string  `json:"lang"`
	Method         string  `json:"method"`
	Rows           int64   `json:"rows"`
	Seconds        float64 `json:"seconds"`
	RowsPerS       float64 `json:"rows_per_s"`
	RatioToCeiling float64 `json:"ratio_to_ceiling"`
	PeakRSSMB      float64 `json:"peak_rss_mb"`
	Width          int     `json:"width"`
	XSum           float64 `json:"x_sum"`
	YSum           float64 `json:"y_sum"`
	PGCPUSeconds   float64 `json:"postgres_cpu_seconds"`
}

type memoryResult struct {
	Rows int `json:"rows"`
	// PeakRSSMB is each role's largest peak over Runs.
	PeakRSSMB map[string]float64 `json:"peak_rss_mb"`
	Runs      []*e2eResult       `json:"runs"`
	Baselines []baselineResult   `json:"baselines"`
}

type target struct {
	Name string  `json:"name"`
	Want string  `json:"want"`
	Got  float64 `json:"got"`
	Unit string  `json:"unit"`
	Met  bool    `json:"met"`
}

// roles in the order of the data path; "nats" is the NATS server the roles share.
var roles = []string{"nats", "coordinator", "fetcher", "preprocessor", "trainer"}

func machineFacts(ctx context.Context, h *harness) (machine, error) {
	m := machine{
		Cores:        runtime.NumCPU(),
		Go:           runtime.Version(),
		NATSServer:   server.VERSION,
		LoadAvgStart: loadAvg(),
	}
	if err := h.pool.QueryRow(ctx, "show server_version").Scan(&m.PostgreSQL); err != nil {
		return m, err
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.CPU = procField("/proc/cpuinfo", "model name")
	if kb, err := strconv.ParseFloat(strings.Fields(procField("/proc/meminfo", "MemTotal") + " 0")[0], 64); err == nil {
		m.MemoryGB = kb / (1 << 20)
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			switch d.Path {
			case "github.com/nats-io/nats.go":
				m.NATSClient = d.Version
			case "github.com/jackc/pgx/v5":
				m.Pgx = d.Version
			}
		}
	}
	return m, nil
}

// procField is the value of the first "key: value" line of a /proc file.
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// pickHeadlines chooses the runs the top-level figures come from.
func (r *results) pickHeadlines() {
	var best, bestMLP *e2eResult
	for _, e := range r.E2E {
		if e.Env != "" {
			continue // a tuning variant, not what a user gets
		}
		switch e.Model {
		case modelNoop:
			if best == nil || e.FirstEpoch.RowsPerS > best.FirstEpoch.RowsPerS {
				best = e
			}
		case modelMLP:
			if bestMLP == nil || e.FirstEpoch.RowsPerS > bestMLP.FirstEpoch.RowsPerS {
				bestMLP = e
			}
		}
	}
	if best != nil {
		r.E2EHeadline = fmt.Sprintf("%s model, %d fetcher(s)", best.Model, best.Fetchers)
		r.E2EFirstEpochRowsPerS = best.FirstEpoch.RowsPerS
		r.E2EReplayRowsPerS = best.ReplayEpochs.RowsPerS
		r.TimeToFirstBatchS = best.TimeToFirstBatch
	}
	if bestMLP != nil {
		r.E2EMLPFirstEpochRowsPerS = bestMLP.FirstEpoch.RowsPerS
		r.E2EMLPReplayRowsPerS = bestMLP.ReplayEpochs.RowsPerS
	}
}

// judge checks the targets against what was measured.
func (r *results) judge() {
	c := r.CopyRowsPerS
	r.Ratios = map[string]float64{}
	// atLeast records a ratio under its key and judges it against want.
	atLeast := func(key, name string, got, want float64) {
		r.Ratios[key] = got
		r.Targets = append(r.Targets, target{Name: name, Want: fmt.Sprintf("≥ %.1f×", want), Got: got, Unit: "×", Met: got >= want})
	}
	atLeast("first_epoch_to_copy", "first epoch vs binary COPY", ratio(r.E2EFirstEpochRowsPerS, c), 0.8)
	for _, b := range r.Baselines {
		if b.Lang == "go" && b.Method == "cursor" && b.RowsPerS > 0 {
			atLeast("first_epoch_to_go_cursor", "first epoch vs the Go cursor way", ratio(r.E2EFirstEpochRowsPerS, b.RowsPerS), 1.1)
		}
	}
	if r.BestBaselineRowsPerS > 0 {
		r.Ratios["first_epoch_to_best_usual_way"] = ratio(r.E2EFirstEpochRowsPerS, r.BestBaselineRowsPerS)
	}
	if r.E2EMLPFirstEpochRowsPerS > 0 {
		atLeast("mlp_first_epoch_to_copy", "first epoch with the MLP vs binary COPY", ratio(r.E2EMLPFirstEpochRowsPerS, c), 0.6)
	}
	// Beside the target: the best of the Python ways, which is what most users run.
	var bestPy baselineResult
	for _, b := range r.Baselines {
		if b.Lang == "python" && b.RowsPerS > bestPy.RowsPerS {
			bestPy = b
		}
	}
	if bestPy.RowsPerS > 0 {
		r.Targets = append(r.Targets, target{Name: "(beside it) first epoch vs best Python way (" + bestPy.Name + ")", Want: "≥ 2×",
			Got: ratio(r.E2EFirstEpochRowsPerS, bestPy.RowsPerS), Unit: "×", Met: r.E2EFirstEpochRowsPerS >= 2*bestPy.RowsPerS})
	}
	if r.TimeToFirstBatchS > 0 {
		r.Targets = append(r.Targets, target{Name: "time to the first batch (" + r.E2EHeadline + ")", Want: "≤ 1.0 s",
			Got: r.TimeToFirstBatchS, Unit: " s", Met: r.TimeToFirstBatchS <= 1.0})
	}
	r.PlanToCopy = map[string]float64{}
	for _, pr := range r.Planning {
		r.PlanToCopy[strconv.FormatInt(pr.Rows, 10)] = pr.Ratio
		r.Targets = append(r.Targets, target{Name: fmt.Sprintf("planning vs binary COPY of the planned columns at %s rows", human(int(pr.Rows))),
			Want: "≤ 1.20×", Got: pr.Ratio, Unit: "×", Met: pr.Ratio <= 1.2})
	}
	atLeast("replay_to_copy", "replay epoch vs binary COPY", ratio(r.E2EReplayRowsPerS, c), 3)
	if pr := r.Prediction; pr != nil {
		atLeast("prediction_to_slower_copy", "prediction vs the slower of binary COPY in and COPY FROM out",
			ratio(pr.Predict.RowsPerS, pr.SlowerCopyRowsPerS), 0.4)
		r.Ratios["prediction_to_copy"] = ratio(pr.Predict.RowsPerS, c)
		r.Ratios["prediction_to_copy_from"] = ratio(pr.Predict.RowsPerS, pr.CopyFromRowsPerS)
	}
	if sw := r.Sweep; sw != nil {
		r.SweepRowsRead, r.SeparateRowsRead = sw.Sweep.RowsRead, sw.Separate.RowsRead
		r.SweepWallSeconds, r.SeparateWallSeconds = sw.Sweep.WallSeconds, sw.Separate.WallSeconds
		r.Ratios["sweep_rows_read_to_separate"] = ratio(float64(sw.Sweep.RowsRead), float64(sw.Separate.RowsRead))
		r.Ratios["sweep_wall_to_separate"] = ratio(sw.Sweep.WallSeconds, sw.Separate.WallSeconds)
	}
	if len(r.Memory) == 2 {
		small, large := r.Memory[0], r.Memory[1]
		sizes := fmt.Sprintf("at %s vs %s rows", human(large.Rows), human(small.Rows))
		// Cost linear in rows: the first epoch's speed at the larger size, each size's
		// fastest run (the slower ones measure the machine's other load).
		fastest := func(m memoryResult) float64 {
			best := 0.0
			for _, run := range m.Runs {
				best = max(best, run.FirstEpoch.RowsPerS)
			}
			return best
		}
		if a, b := fastest(small), fastest(large); a > 0 {
			got := ratio(b, a)
			r.Ratios["first_epoch_rows_per_s_large_to_small"] = got
			r.Targets = append(r.Targets, target{Name: "first epoch rows/s " + sizes, Want: "≥ 0.90×", Got: got, Unit: "×", Met: got >= 0.9})
		}
		for _, role := range roles {
			a, b := small.PeakRSSMB[role], large.PeakRSSMB[role]
			r.Ratios[role+"_peak_rss_large_to_small"] = ratio(b, a)
			if role == "nats" {
				// The server holds READY's blocks, so its bound is READY's, not flat.
				limit := natsMemoryLimitMB()
				r.Ratios["nats_peak_rss_to_memory_limit"] = ratio(max(a, b), limit)
				r.Targets = append(r.Targets, target{
					Name: fmt.Sprintf("nats peak RSS at %s and %s rows vs its memory limit (READY's %d MiB + %d MiB)",
						human(small.Rows), human(large.Rows), bus.DefaultReadyMaxBytes>>20, bus.ServerMemoryHeadroom>>20),
					Want: "≤ 1.00×", Got: ratio(max(a, b), limit), Unit: "×", Met: max(a, b) <= limit,
				})
				continue
			}
			r.Targets = append(r.Targets, target{
				Name: fmt.Sprintf("%s peak RSS %s", role, sizes),
				Want: "≤ 1.10×", Got: ratio(b, a), Unit: "×", Met: b <= 1.10*a,
			})
		}
	}
}

func (r *results) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	r.Command = commandLine()
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	var md strings.Builder
	r.markdown(&md)
	return os.WriteFile(filepath.Join(dir, "results.md"), []byte(md.String()), 0o644)
}

func commandLine() string {
	args := slices.Clone(os.Args[1:])
	return "pipeline " + strings.Join(args, " ")
}

func (r *results) markdown(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	m := r.Machine
	p("# pgtrain pipeline benchmark\n\n")
	p("%s rows (bigint key, 16 real features, one text category of %d values, a real label), measured one after another in one run of `%s`, started %s, %.0f s in all.\n\n",
		human(int(r.Rows)), len(categories), r.Command, r.StartedAt, r.Seconds)
	p("Machine: %d cores (%s), %.0f GB; Linux %s; %s; PostgreSQL %s; nats-server %s, nats.go %s; pgx %s; %s.\n",
		m.Cores, m.CPU, m.MemoryGB, m.Kernel, m.Go, m.PostgreSQL, m.NATSServer, m.NATSClient, m.Pgx, pythonLine(m.Python))
	p("PostgreSQL, NATS and every role share those cores, and the machine was not idle: the load average was %s at the start and %s at the end. Figures from one run; compare them with each other rather than across runs.\n\n",
		m.LoadAvgStart, m.LoadAvgEnd)

	p("## Headline\n\n| figure | rows/s | × binary COPY |\n|---|---:|---:|\n")
	p("| binary COPY into a discarding writer (ceiling) | %s | 1.00 |\n", num(r.CopyRowsPerS))
	p("| best usual way (%s) | %s | %.2f |\n", r.BestBaseline, num(r.BestBaselineRowsPerS), ratio(r.BestBaselineRowsPerS, r.CopyRowsPerS))
	p("| pgtrain first epoch, from PostgreSQL (%s) | %s | %.2f |\n", r.E2EHeadline, num(r.E2EFirstEpochRowsPerS), ratio(r.E2EFirstEpochRowsPerS, r.CopyRowsPerS))
	p("| pgtrain replay epoch, from READY (same run) | %s | %.2f |\n", num(r.E2EReplayRowsPerS), ratio(r.E2EReplayRowsPerS, r.CopyRowsPerS))
	p("| pgtrain first epoch with the MLP (best fetcher count) | %s | %.2f |\n", num(r.E2EMLPFirstEpochRowsPerS), ratio(r.E2EMLPFirstEpochRowsPerS, r.CopyRowsPerS))
	p("| pgtrain replay epoch with the MLP | %s | %.2f |\n", num(r.E2EMLPReplayRowsPerS), ratio(r.E2EMLPReplayRowsPerS, r.CopyRowsPerS))
	if r.Prediction != nil {
		p("| binary COPY FROM STDIN into a (key, value) table | %s | %.2f |\n", num(r.CopyFromRowsPerS), ratio(r.CopyFromRowsPerS, r.CopyRowsPerS))
		p("| pgtrain batch prediction, table to output table | %s | %.2f |\n", num(r.PredictionRowsPerS), ratio(r.PredictionRowsPerS, r.CopyRowsPerS))
	}
	p("\n")
	p("Time from job submission to the first training step (%s): %.2f s.\n\n", r.E2EHeadline, r.TimeToFirstBatchS)

	p("## Targets\n\n| target | want | measured | met |\n|---|---|---:|---|\n")
	for _, t := range r.Targets {
		met := "yes"
		if !t.Met {
			met = "**no**"
		}
		p("| %s | %s | %.2f%s | %s |\n", t.Name, t.Want, t.Got, t.Unit, met)
	}

	p("\n## 1. Ceiling\n\n`COPY table (needed columns) TO STDOUT WITH (FORMAT binary)` through pgconn's `CopyTo` into a writer that discards it, after one unrecorded warm-up: median of %d runs, %s rows/s (%s per row).\n\n",
		len(r.Ceiling.Runs), num(r.Ceiling.RowsPerS), bytesPerRow(r.Ceiling.Bytes, r.Rows))
	p("| run | seconds | rows/s | PostgreSQL CPU (s) |\n|---|---:|---:|---:|\n")
	for i, run := range r.Ceiling.Runs {
		p("| %d | %.2f | %s | %.2f |\n", i+1, run.Seconds, num(run.RowsPerS), r.Ceiling.PGCPUSeconds[i])
	}

	if len(r.Ceiling.Keyset) > 0 {
		p("\nBeside it, the fetchers' read pattern alone (keyset pages of %d rows, binary results, nothing decoded), one reader:\n\n| pages | seconds | rows/s | × COPY | PostgreSQL CPU (s) |\n|---|---:|---:|---:|---:|\n", keysetPageRows)
		for _, k := range r.Ceiling.Keyset {
			what := map[string]string{
				"keyset":        "numbers cast to float8",
				"keyset-float4": "numbers as stored (real), as the fetchers read them",
				"range-copy":    fmt.Sprintf("instead, one `COPY (SELECT … ORDER BY key) TO STDOUT (FORMAT binary)` per key range of %s rows", num(messages.DefaultRangeRows)),
			}[k.Method]
			p("| %s | %.2f | %s | %.2f | %.2f |\n", what, k.Seconds, num(k.RowsPerS), k.RatioToCeiling, k.PGCPUSeconds)
		}
	}

	writePlanning(p, r.Planning)

	p("\n## 2. The usual ways\n\nEach reads the table and ends with the same float32 arrays as pgtrain's preprocessing (16 standardised columns, the category one-hot, the label), in its own process; its time runs from connecting to the arrays being built, its memory is the process's peak RSS.\n\n")
	p("| way | seconds | rows/s | × COPY | peak RSS (MB) | PostgreSQL CPU (s) |\n|---|---:|---:|---:|---:|---:|\n")
	for _, b := range r.Baselines {
		p("| %s | %.2f | %s | %.2f | %.0f | %.2f |\n", baselineLabel(b), b.Seconds, num(b.RowsPerS), b.RatioToCeiling, b.PeakRSSMB, b.PGCPUSeconds)
	}
	if !strings.HasPrefix(m.Python, "/") {
		p("\nPython baselines: %s.\n", m.Python)
	}

	p("\n## 3. pgtrain end to end\n\nEvery role in its own process; preprocessing standardises the 16 columns and one-hots the category. First epoch: from the submission's answer (the plan is ready) until the trainer's epoch result is seen; \"with planning\" also counts the submission (statistics and range split in SQL). Replay: the later epochs, timed by the trainer, read from READY. A model with an environment in brackets is a tuning variant (every process of that run started with it), never a headline figure.\n\n")
	p("| model | fetchers | preprocessors | plan (s) | plan: PostgreSQL CPU (s) | first epoch rows/s | × COPY | with planning rows/s | replay rows/s | × COPY | first batch after (s) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, e := range r.E2E {
		replay := "—"
		replayRatio := "—"
		if e.Replay && e.ReplayEpochs.Rows > 0 {
			replay, replayRatio = num(e.ReplayEpochs.RowsPerS), fmt.Sprintf("%.2f", e.ReplayEpochs.RatioToCeiling)
		} else if e.ReplayEpochs.Rows > 0 {
			replay, replayRatio = num(e.ReplayEpochs.RowsPerS)+" (re-read)", fmt.Sprintf("%.2f", e.ReplayEpochs.RatioToCeiling)
		}
		p("| %s | %d | %d | %.2f | %.2f | %s | %.2f | %s | %s | %s | %.2f |\n",
			e.label(), e.Fetchers, e.Preprocessors, e.PlanSeconds, e.PlanPGCPUSeconds, num(e.FirstEpoch.RowsPerS), e.FirstEpoch.RatioToCeiling,
			num(e.FirstEpochWithPlan.RowsPerS), replay, replayRatio, e.TimeToFirstBatch)
	}
	p("\nPeak RSS of each role in these runs (MB; fetcher: the largest of the fetchers):\n\n| model | fetchers |")
	for _, role := range roles {
		p(" %s |", role)
	}
	p("\n|---|---:|%s\n", strings.Repeat("---:|", len(roles)))
	for _, e := range r.E2E {
		p("| %s | %d |", e.label(), e.Fetchers)
		for _, role := range roles {
			p(" %.0f |", e.PeakRSSMB[role])
		}
		p("\n")
	}

	cpuRoles := append([]string{"postgres"}, roles...)
	p("\nCPU seconds of each process over the run (user + system; fetcher: all fetchers together; postgres: the server's backends), beside the run's wall time from submission to the end:\n\n| model | fetchers |")
	for _, role := range cpuRoles {
		p(" %s |", role)
	}
	p(" total CPU | wall |\n|---|---:|%s\n", strings.Repeat("---:|", len(cpuRoles)+2))
	for _, e := range r.E2E {
		p("| %s | %d |", e.label(), e.Fetchers)
		total := 0.0
		for _, role := range cpuRoles {
			p(" %.1f |", e.CPUSeconds[role])
			total += e.CPUSeconds[role]
		}
		p(" %.1f | %.1f |\n", total, e.WallSeconds)
	}

	if len(r.Memory) == 2 {
		small, large := r.Memory[0], r.Memory[1]
		p("\n## 4. Memory\n\nPeak RSS (MB) of each process at %s and %s rows: pgtrain's roles (%s, %d runs at each size; the peak is the largest, each run's in brackets), and the Go versions of the usual ways on the same tables.\n\n",
			human(small.Rows), human(large.Rows), small.Runs[0].e2eConfig, len(small.Runs))
		p("| process | %s rows | %s rows | ratio |\n|---|---:|---:|---:|\n", human(small.Rows), human(large.Rows))
		each := func(m memoryResult, role string) string {
			var v []string
			for _, run := range m.Runs {
				v = append(v, fmt.Sprintf("%.0f", run.PeakRSSMB[role]))
			}
			return strings.Join(v, ", ")
		}
		for _, role := range roles {
			a, b := small.PeakRSSMB[role], large.PeakRSSMB[role]
			p("| pgtrain %s | %.0f (%s) | %.0f (%s) | %.2f |\n", role, a, each(small, role), b, each(large, role), ratio(b, a))
		}
		for i := range small.Baselines {
			a, b := small.Baselines[i].PeakRSSMB, large.Baselines[i].PeakRSSMB
			p("| %s | %.0f | %.0f | %.2f |\n", baselineLabel(small.Baselines[i]), a, b, ratio(b, a))
		}
		speeds := func(m memoryResult, f func(*e2eResult) float64) string {
			var v []string
			for _, run := range m.Runs {
				v = append(v, num(f(run)))
			}
			return strings.Join(v, ", ")
		}
		first := func(e *e2eResult) float64 { return e.FirstEpoch.RowsPerS }
		replay := func(e *e2eResult) float64 { return e.ReplayEpochs.RowsPerS }
		p("\nThe same runs' speed (rows/s): first epoch %s at %s rows and %s at %s rows; replay %s and %s.\n",
			speeds(small, first), human(small.Rows), speeds(large, first), human(large.Rows), speeds(small, replay), speeds(large, replay))
		p("\nWhat bounds the NATS server's memory: `pgtrain nats --memory-limit`, a soft limit of its Go heap, by default READY's byte limit plus %d MiB (`--ready-max-bytes`, 1 GiB by default, so %.0f MB; these runs use the default). "+
			"Its file store keeps every block it wrote or read in the last ten seconds, and a replay reads all of READY: under a lower limit the collector runs without pause and blocks are read from disk again between two reads of the same block (the replay slowed threefold at 256 MiB); at READY's limit the blocks a replay touches fit. "+
			"So the server's RSS is bounded by what READY may hold, not by the table: at 8M rows READY cannot hold the table, the job does not replay, and the fetchers' window keeps READY within three quarters of its limit.\n",
			bus.ServerMemoryHeadroom>>20, natsMemoryLimitMB())
	}

	p("\n## 5. Time to first batch\n\nSeconds from sending the job to the trainer's first training step (planning, the first key range read, preprocessed and delivered):\n\n| model | fetchers | seconds |\n|---|---:|---:|\n")
	for _, e := range r.E2E {
		p("| %s | %d | %.2f |\n", e.label(), e.Fetchers, e.TimeToFirstBatch)
	}
	r.predictionMarkdown(w)
	r.sweepMarkdown(w)
}

// sweepMarkdown is section 7.
func (r *results) sweepMarkdown(w io.Writer) {
	sw := r.Sweep
	if sw == nil {
		return
	}
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("\n## 7. Sweep\n\nOne job with a `sweep` of %d variants of the MLP (itself, another learning rate, smaller layers, SGD with momentum), then the same %d variants as separate jobs submitted together, in one cluster (%s) with %d `pgtrain trainer` processes. Rows read from PostgreSQL are the fetchers' count over every job; wall time runs from the first submission to the last job's end.\n\n",
		sw.Variants, sw.Variants, sw.e2eConfig, sw.Trainers)
	p("| run | rows read from PostgreSQL | wall s | PostgreSQL CPU s |\n|---|---:|---:|---:|\n")
	p("| one sweep of %d variants | %s | %.1f | %.1f |\n", sw.Variants, num(float64(sw.Sweep.RowsRead)), sw.Sweep.WallSeconds, sw.Sweep.PGCPUSeconds)
	p("| %d separate jobs | %s | %.1f | %.1f |\n", sw.Variants, num(float64(sw.Separate.RowsRead)), sw.Separate.WallSeconds, sw.Separate.PGCPUSeconds)
	p("\nSweep over separate jobs: rows read %.2f×, wall time %.2f×. Every variant's last loss equals its separate job's: %v.\n",
		ratio(float64(sw.Sweep.RowsRead), float64(sw.Separate.RowsRead)), ratio(sw.Sweep.WallSeconds, sw.Separate.WallSeconds), sw.SameLoss)
}

// predictionMarkdown is section 6.
func (r *results) predictionMarkdown(w io.Writer) {
	pr := r.Prediction
	if pr == nil {
		return
	}
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("\n## 6. Prediction\n\nA model trained for one epoch (%s; %.1f s) scores the same table: `POST /v1/predictions` (mode `replace`, no evaluation), timed from the submission to the job being done, every role in its own process with %d fetcher(s), %d preprocessor(s) and %d `pgtrain scorer` process(es); the output table is checked to hold every key. "+
		"Beside it, the two ends' ceilings in the same run: the binary COPY ceiling of section 1 (in), and binary `COPY FROM STDIN` (pgx's CopyFrom, in its own process) of as many rows into a fresh table shaped like the output, `(id bigint primary key, value real)`, median of %d runs (out).\n\n",
		pr.Training.e2eConfig, pr.Training.WallSeconds, pr.Fetchers, pr.Preprocessors, pr.Scorers, len(pr.CopyFrom))
	p("| figure | seconds | rows/s | × the slower COPY |\n|---|---:|---:|---:|\n")
	p("| binary COPY out of the table (ceiling, in) | %.2f | %s | %.2f |\n", ratio(float64(r.Rows), r.CopyRowsPerS), num(r.CopyRowsPerS), ratio(r.CopyRowsPerS, pr.SlowerCopyRowsPerS))
	for i, run := range pr.CopyFrom {
		p("| binary COPY FROM STDIN, run %d | %.2f | %s | %.2f |\n", i+1, run.Seconds, num(run.RowsPerS), ratio(run.RowsPerS, pr.SlowerCopyRowsPerS))
	}
	p("| pgtrain prediction, submission to done | %.2f | %s | %.2f |\n", pr.Predict.Seconds, num(pr.Predict.RowsPerS), ratio(pr.Predict.RowsPerS, pr.SlowerCopyRowsPerS))
	p("\nOf that, the submission (planning: the schema checks, the key's ranges, the output table's creation): %.2f s. PostgreSQL's CPU time over the prediction alone: %.1f s.\n", pr.PlanSeconds, pr.PredictPGCPUSeconds)
	if ev := pr.Evaluation; ev != nil {
		p("\nThe same job without the output table (`pgtrain evaluate`: reading, preprocessing and the forward pass, nothing written), with the same scorers: %.2f s, %s rows/s, PostgreSQL CPU %.1f s; writing the output cost PostgreSQL about %.1f s.\n",
			ev.Predict.Seconds, num(ev.Predict.RowsPerS), ev.PGCPUSeconds, pr.PredictPGCPUSeconds-ev.PGCPUSeconds)
	}
	if len(pr.Compared) > 0 && pr.Compared[0].WorkersCPUSeconds > 0 {
		p("\nThe same prediction again in the same cluster, with two whole builds in turn (`--compare-pgtrain`: the coordinator, fetchers, preprocessors and scorers of each run started from its binary; the NATS server and PostgreSQL the same):\n\n| run | binary | seconds | planning (s) | rows/s | × the slower COPY | PostgreSQL CPU (s) | scorers' CPU (s) | coordinator, fetchers, preprocessors CPU (s) | NATS CPU (s) |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for i, c := range pr.Compared {
			p("| %d | `%s` | %.2f | %.2f | %s | %.2f | %.1f | %.1f | %.1f | %.1f |\n", i+1, c.Scorer, c.Predict.Seconds, c.PlanSeconds, num(c.Predict.RowsPerS), ratio(c.Predict.RowsPerS, pr.SlowerCopyRowsPerS), c.PGCPUSeconds, c.ScorerCPUSeconds, c.WorkersCPUSeconds, c.NATSCPUSeconds)
		}
	} else if len(pr.Compared) > 0 {
		p("\nThe same prediction again in the same cluster, with the scorers of two builds in turn (`--compare-scorer`):\n\n| run | scorer binary | seconds | rows/s | × the slower COPY | PostgreSQL CPU (s) | scorers' CPU (s) |\n|---:|---|---:|---:|---:|---:|---:|\n")
		for i, c := range pr.Compared {
			p("| %d | `%s` | %.2f | %s | %.2f | %.1f | %.1f |\n", i+1, c.Scorer, c.Predict.Seconds, num(c.Predict.RowsPerS), ratio(c.Predict.RowsPerS, pr.SlowerCopyRowsPerS), c.PGCPUSeconds, c.ScorerCPUSeconds)
		}
	}
	predRoles := append([]string{"postgres"}, roles...)
	predRoles = append(predRoles, "scorer")
	p("\nCPU seconds (training and prediction together) and peak RSS (MB) of each role in the run:\n\n| | %s |\n|---|%s\n", strings.Join(predRoles, " | "), strings.Repeat("---:|", len(predRoles)))
	p("| CPU (s) |")
	for _, role := range predRoles {
		p(" %.1f |", pr.CPUSeconds[role])
	}
	p("\n| peak RSS (MB) |")
	for _, role := range predRoles {
		if role == "postgres" {
			p(" — |")
			continue
		}
		p(" %.0f |", pr.PeakRSSMB[role])
	}
	p("\n")
}

func baselineLabel(b baselineResult) string {
	lang := map[string]string{"go": "Go", "python": "Python"}[b.Lang]
	what := map[string]string{
		"fetchall": "one query, all rows into memory",
		"cursor":   "server-side cursor, 1024 rows per FETCH",
		"csv":      "COPY … CSV parsed into arrays",
	}[b.Method]
	return lang + ": " + what
}

func pythonLine(s string) string {
	if strings.HasPrefix(s, "/") {
		path, v, _ := strings.Cut(s, ": ")
		return "Python baselines on " + path + " (" + v + ")"
	}
	return "Python baselines " + s
}

func bytesPerRow(bytes, rows int64) string {
	if rows == 0 {
		return "?"
	}
	return fmt.Sprintf("%.0f bytes", float64(bytes)/float64(rows))
}

// num prints a rate with thousands separators.
func num(v float64) string {
	s := strconv.FormatInt(int64(v+0.5), 10)
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// human prints a row count as 20k, 1M, 2.5M.
func human(n int) string {
	switch {
	case n >= 1_000_000 && n%100_000 == 0:
		return strconv.FormatFloat(float64(n)/1e6, 'f', -1, 64) + "M"
	case n >= 1000 && n%100 == 0:
		return strconv.FormatFloat(float64(n)/1e3, 'f', -1, 64) + "k"
	}
	return strconv.Itoa(n)
}

func (r *results) printSummary(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	c := r.CopyRowsPerS
	p("\n%s rows on %d cores (load average %s → %s)\n", human(int(r.Rows)), r.Machine.Cores, r.Machine.LoadAvgStart, r.Machine.LoadAvgEnd)
	p("  binary COPY ceiling        %12s rows/s\n", num(c))
	p("  best usual way             %12s rows/s  %.2f× COPY  (%s)\n", num(r.BestBaselineRowsPerS), ratio(r.BestBaselineRowsPerS, c), r.BestBaseline)
	p("  pgtrain first epoch        %12s rows/s  %.2f× COPY  %.2f× best usual way  (%s)\n", num(r.E2EFirstEpochRowsPerS),
		ratio(r.E2EFirstEpochRowsPerS, c), ratio(r.E2EFirstEpochRowsPerS, r.BestBaselineRowsPerS), r.E2EHeadline)
	p("  pgtrain replay epoch       %12s rows/s  %.2f× COPY\n", num(r.E2EReplayRowsPerS), ratio(r.E2EReplayRowsPerS, c))
	p("  pgtrain MLP first / replay %12s / %s rows/s\n", num(r.E2EMLPFirstEpochRowsPerS), num(r.E2EMLPReplayRowsPerS))
	p("  first batch after          %12.2f s\n", r.TimeToFirstBatchS)
	if pr := r.Prediction; pr != nil {
		p("  COPY FROM out              %12s rows/s\n", num(r.CopyFromRowsPerS))
		p("  prediction (%d scorers)     %12s rows/s  %.2f× the slower COPY\n", pr.Scorers, num(r.PredictionRowsPerS), ratio(r.PredictionRowsPerS, pr.SlowerCopyRowsPerS))
	}
	if sw := r.Sweep; sw != nil {
		p("  sweep of %d vs %d jobs      rows read %s vs %s, wall %.1f vs %.1f s\n", sw.Variants, sw.Variants,
			num(float64(sw.Sweep.RowsRead)), num(float64(sw.Separate.RowsRead)), sw.Sweep.WallSeconds, sw.Separate.WallSeconds)
	}
	sizes := make([]string, 0, len(r.PeakRSSMB))
	for k := range r.PeakRSSMB {
		sizes = append(sizes, k)
	}
	sort.Slice(sizes, func(i, j int) bool { a, _ := strconv.Atoi(sizes[i]); b, _ := strconv.Atoi(sizes[j]); return a < b })
	for _, s := range sizes {
		n, _ := strconv.Atoi(s)
		p("  peak RSS at %-6s rows    ", human(n))
		for _, role := range roles {
			p(" %s %.0f MB", role, r.PeakRSSMB[s][role])
		}
		p("\n")
	}
	for _, t := range r.Targets {
		mark := "met"
		if !t.Met {
			mark = "MISSED"
		}
		p("  target %-52s %s: %.2f%s (%s)\n", t.Name, t.Want, t.Got, t.Unit, mark)
	}
}

// natsMemoryLimitMB is the default heap limit of `pgtrain nats`, which the benchmark runs.
func natsMemoryLimitMB() float64 {
	limit, _ := bus.ServerMemoryLimit(bus.DefaultReadyMaxBytes)
	return float64(limit) / 1e6
}
