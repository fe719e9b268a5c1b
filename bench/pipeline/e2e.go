package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/coordinator/client"
	"pgtrain/messages"
)

// e2eConfig is one end-to-end run.
type e2eConfig struct {
	Model         string `json:"model"`
	Fetchers      int    `json:"fetchers"`
	Preprocessors int    `json:"preprocessors"`
	Epochs        int    `json:"epochs"`
	// Env is extra environment of every process of the run (a tuning variant), "" for none.
	Env string `json:"env,omitempty"`
	// Trainers, when set, runs that many `pgtrain trainer` processes (the model of the job
	// spec, on the pure-Go engine) instead of the harness's one-job trainer.
	Trainers int `json:"trainers,omitempty"`
}

func (c e2eConfig) String() string {
	s := fmt.Sprintf("%s model, %d fetcher(s), %d preprocessor(s), %d epochs", c.Model, c.Fetchers, c.Preprocessors, c.Epochs)
	if c.Env != "" {
		s += ", " + c.Env
	}
	return s
}

func (c e2eConfig) env() []string { return strings.Fields(c.Env) }

// e2eResult is what one run measured.
type e2eResult struct {
	e2eConfig
	Table string `json:"table"`
	JobID string `json:"job_id"`
	Rows  int64  `json:"rows"`
	// PlanSeconds is the submission's round trip: schema check, statistics, range split.
	PlanSeconds float64 `json:"plan_seconds"`
	// PlanPGCPUSeconds is PostgreSQL's CPU time while planning.
	PlanPGCPUSeconds float64 `json:"plan_postgres_cpu_seconds"`
	Ranges           int     `json:"ranges"`
	Replay           bool    `json:"replay"`
	// FirstEpoch runs from the submission's answer (the plan is ready) until the trainer's
	// first epoch result is seen at the coordinator: every row read from PostgreSQL,
	// preprocessed, and delivered to the trainer.
	FirstEpoch rate `json:"first_epoch"`
	// FirstEpochWithPlan also counts planning.
	FirstEpochWithPlan rate `json:"first_epoch_with_plan"`
	// Replay epochs are timed by the trainer (its per-epoch wall time), all later epochs
	// together.
	ReplayEpochs rate `json:"replay_epochs"`
	// TimeToFirstBatch is from the submission being sent to the first training step.
	TimeToFirstBatch float64 `json:"time_to_first_batch_s"`
	// TrainerEpochSeconds are the trainer's own epoch times.
	TrainerEpochSeconds []float64          `json:"trainer_epoch_seconds"`
	Loss                []float64          `json:"loss"`
	PeakRSSMB           map[string]float64 `json:"peak_rss_mb"`
	// FetcherRSSMB lists every fetcher's peak; PeakRSSMB["fetcher"] is the largest.
	FetcherRSSMB []float64 `json:"fetcher_rss_mb"`
	// CPUSeconds is the CPU time each role used over the whole run (every fetcher together),
	// and PostgreSQL's over the job: where the two cores went.
	CPUSeconds map[string]float64 `json:"cpu_seconds"`
	// WallSeconds is the run from submission to the job's end.
	WallSeconds float64 `json:"wall_seconds"`
}

// rate is rows over seconds, and the ratio to the COPY ceiling.
type rate struct {
	Rows           int64   `json:"rows"`
	Seconds        float64 `json:"seconds"`
	RowsPerS       float64 `json:"rows_per_s"`
	RatioToCeiling float64 `json:"ratio_to_ceiling"`
}

func newRate(rows int64, seconds, ceiling float64) rate {
	r := rate{Rows: rows, Seconds: seconds}
	if seconds > 0 {
		r.RowsPerS = float64(rows) / seconds
	}
	if ceiling > 0 {
		r.RatioToCeiling = r.RowsPerS / ceiling
	}
	return r
}

// jobSpec is the benchmark job: every numeric column standardised, the category one-hot,
// the label as it is, all ranges for training. The no-op run names a one-unit model, which
// the coordinator checks like any other; its trainer swaps in the engine that does nothing.
func jobSpec(table, model string, epochs int) []byte {
	var feats []string
	for _, f := range featureNames() {
		feats = append(feats, fmt.Sprintf(`{"column": %q, "scale": "standard"}`, f))
	}
	feats = append(feats, `{"column": "cat", "encode": "onehot"}`)
	layers := `{"type": "dense", "units": 1}`
	if model == modelMLP {
		layers = `{"type": "dense", "units": 64, "activation": "relu"},
			{"type": "dense", "units": 64, "activation": "relu"},
			{"type": "dense", "units": 1}`
	}
	return []byte(fmt.Sprintf(`{
		"table": %q, "key": "id",
		"features": [%s],
		"label": "y",
		"model": {"layers": [%s]},
		"optimizer": {"name": "adam", "learning_rate": 0.001},
		"loss": "mse",
		"epochs": %d, "batch_size": 256, "seed": 7
	}`, table, strings.Join(feats, ",\n"), layers, epochs))
}

// cluster is one process per role.
type cluster struct {
	dir      string
	nats     *proc
	coord    *proc
	fetchers []*proc
	preprocs []*proc
	trainer  *proc
	trainers []*proc // `pgtrain trainer` processes (e2eConfig.Trainers)
	scorers  []*proc // only in a prediction run, started once the model is trained
	// retired are the coordinators, fetchers and preprocessors a comparison of whole
	// builds has stopped, counted in the run's CPU times.
	retired  []*proc
	natsURL  string
	coordURL string
}

func (c *cluster) all() []*proc {
	ps := []*proc{c.nats, c.coord}
	ps = append(ps, c.fetchers...)
	ps = append(ps, c.preprocs...)
	if c.trainer != nil {
		ps = append(ps, c.trainer)
	}
	ps = append(ps, c.trainers...)
	ps = append(ps, c.scorers...)
	ps = append(ps, c.retired...)
	var out []*proc
	for _, p := range ps {
		if p != nil {
			out = append(out, p)
		}
	}
	return out
}

// startCluster starts NATS, the coordinator, the workers and the trainer, each in its own
// process, in the order a deployment would.
func startCluster(ctx context.Context, env *harness, dir string, cfg e2eConfig) (*cluster, error) {
	c := &cluster{dir: dir}
	ok := false
	defer func() {
		if !ok {
			c.stop()
		}
	}()
	natsPort, err := freePort()
	if err != nil {
		return nil, err
	}
	coordPort, err := freePort()
	if err != nil {
		return nil, err
	}
	c.natsURL = fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	c.coordURL = fmt.Sprintf("http://127.0.0.1:%d", coordPort)
	logf := func(name string) string { return filepath.Join(dir, name+".log") }

	if c.nats, err = startProc("nats", logf("nats"), cfg.env(), env.pgtrain, "nats",
		"--store-dir", filepath.Join(dir, "nats"), "--host", "127.0.0.1", "--port", strconv.Itoa(natsPort)); err != nil {
		return nil, err
	}
	if err := waitFor(ctx, 20*time.Second, "nats-server", []*proc{c.nats}, func() bool { return dialable(natsPort) }); err != nil {
		return nil, err
	}
	if err := c.startWorkers(ctx, env, cfg, env.pgtrain, ""); err != nil {
		return nil, err
	}
	for i := 1; i <= cfg.Trainers; i++ {
		name := fmt.Sprintf("trainer-%d", i)
		p, err := startProc(name, logf(name), cfg.env(), env.pgtrain, "trainer", "--id", name,
			"--nats-url", c.natsURL, "--coordinator", c.coordURL, "--out-dir", filepath.Join(dir, "models"))
		if err != nil {
			return nil, err
		}
		c.trainers = append(c.trainers, p)
	}
	if cfg.Trainers > 0 {
		ok = true
		return c, nil
	}
	if c.trainer, err = startProc("trainer", logf("trainer"), cfg.env(), env.self, "trainer",
		"--coordinator", c.coordURL, "--nats-url", c.natsURL, "--out-dir", filepath.Join(dir, "models"),
		"--model", cfg.Model, "--first-step-file", filepath.Join(dir, "first_step")); err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

// startWorkers starts the coordinator (on the cluster's address), the fetchers and the
// preprocessors from bin; suffix tells their logs from those of earlier ones.
func (c *cluster) startWorkers(ctx context.Context, env *harness, cfg e2eConfig, bin, suffix string) error {
	logf := func(name string) string { return filepath.Join(c.dir, name+suffix+".log") }
	var err error
	if c.coord, err = startProc("coordinator", logf("coordinator"), cfg.env(), bin, "coordinator",
		"--dsn", env.dsn, "--nats-url", c.natsURL, "--listen", strings.TrimPrefix(c.coordURL, "http://")); err != nil {
		return err
	}
	cl := client.New(c.coordURL, slog.New(slog.DiscardHandler))
	if err := waitFor(ctx, 30*time.Second, "the coordinator", []*proc{c.nats, c.coord}, func() bool {
		hctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return cl.Healthy(hctx) == nil
	}); err != nil {
		return err
	}
	c.fetchers, c.preprocs = nil, nil
	for i := 1; i <= cfg.Fetchers; i++ {
		name := fmt.Sprintf("fetcher-%d", i)
		p, err := startProc(name, logf(name), cfg.env(), bin, "fetcher", "--id", name,
			"--dsn", env.dsn, "--nats-url", c.natsURL, "--coordinator", c.coordURL)
		if err != nil {
			return err
		}
		c.fetchers = append(c.fetchers, p)
	}
	for i := 1; i <= cfg.Preprocessors; i++ {
		name := fmt.Sprintf("preprocessor-%d", i)
		p, err := startProc(name, logf(name), cfg.env(), bin, "preprocessor",
			"--nats-url", c.natsURL, "--coordinator", c.coordURL)
		if err != nil {
			return err
		}
		c.preprocs = append(c.preprocs, p)
	}
	return nil
}

// swapWorkers stops the coordinator, the fetchers and the preprocessors and starts them
// again from bin, on the same NATS server and address (the coordinator's state is in the
// NATS server), and returns the CPU seconds the stopped ones used.
func (c *cluster) swapWorkers(ctx context.Context, env *harness, cfg e2eConfig, bin, suffix string) (float64, error) {
	cpu, err := c.retireWorkers()
	if err != nil {
		return 0, err
	}
	return cpu, c.startWorkers(ctx, env, cfg, bin, suffix)
}

// retireWorkers stops the coordinator, the fetchers and the preprocessors and returns the
// CPU seconds they used.
func (c *cluster) retireWorkers() (float64, error) {
	old := append(append([]*proc{c.coord}, c.fetchers...), c.preprocs...)
	var cpu float64
	for i := len(old) - 1; i >= 0; i-- {
		if err := old[i].stop(30 * time.Second); err != nil {
			return 0, err
		}
		cpu += old[i].cpuSeconds()
	}
	c.retired = append(c.retired, old...)
	c.coord, c.fetchers, c.preprocs = nil, nil, nil
	return cpu, nil
}

// stop shuts the roles down in the reverse order of their start and returns the first error
// of a role that failed (as opposed to one that was asked to stop).
func (c *cluster) stop() error {
	var first error
	ps := c.all()
	for i := len(ps) - 1; i >= 0; i-- {
		if err := ps[i].stop(30 * time.Second); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// runE2E runs one job on a fresh cluster and measures it.
func runE2E(ctx context.Context, env *harness, table string, rows int64, cfg e2eConfig) (*e2eResult, error) {
	dir, err := os.MkdirTemp(env.tmp, "e2e-")
	if err != nil {
		return nil, err
	}
	c, err := startCluster(ctx, env, dir, cfg)
	if err != nil {
		return nil, err
	}
	// The process ids, for a system-wide profiler (perf) run beside the benchmark.
	pids := map[string]int{}
	for _, p := range c.all() {
		pids[p.name] = p.cmd.Process.Pid
	}
	if b, err := json.Marshal(pids); err == nil {
		_ = os.WriteFile(filepath.Join(dir, "pids.json"), b, 0o644)
	}
	if err := settle(ctx, env.pool); err != nil {
		_ = c.stop()
		return nil, err
	}
	pgBefore := pgCPUSeconds(env.pg.DataDir)
	res, runErr := measureJob(ctx, c, table, cfg, env.pg.DataDir)
	stopErr := c.stop()
	pgAfter := settledPGCPU(env.pg.DataDir)
	if runErr != nil {
		return nil, fmt.Errorf("%s: %w (logs in %s)", cfg, runErr, dir)
	}
	if stopErr != nil {
		return nil, fmt.Errorf("%s: stopping: %w", cfg, stopErr)
	}
	res.Table = table
	if res.Rows != rows {
		return nil, fmt.Errorf("%s: the job trained on %d rows, the table has %d", cfg, res.Rows, rows)
	}
	res.PeakRSSMB = map[string]float64{
		"nats":        c.nats.peakRSSMB(),
		"coordinator": c.coord.peakRSSMB(),
		"trainer":     c.trainer.peakRSSMB(),
	}
	res.CPUSeconds = map[string]float64{
		"nats":        c.nats.cpuSeconds(),
		"coordinator": c.coord.cpuSeconds(),
		"trainer":     c.trainer.cpuSeconds(),
		"postgres":    pgAfter - pgBefore,
	}
	for _, f := range c.fetchers {
		res.CPUSeconds["fetcher"] += f.cpuSeconds()
	}
	for _, p := range c.preprocs {
		res.CPUSeconds["preprocessor"] += p.cpuSeconds()
	}
	for _, f := range c.fetchers {
		res.FetcherRSSMB = append(res.FetcherRSSMB, f.peakRSSMB())
		res.PeakRSSMB["fetcher"] = max(res.PeakRSSMB["fetcher"], f.peakRSSMB())
	}
	for _, p := range c.preprocs {
		res.PeakRSSMB["preprocessor"] = max(res.PeakRSSMB["preprocessor"], p.peakRSSMB())
	}
	ceiling := env.ceiling
	res.FirstEpoch.RatioToCeiling = ratio(res.FirstEpoch.RowsPerS, ceiling)
	res.FirstEpochWithPlan.RatioToCeiling = ratio(res.FirstEpochWithPlan.RowsPerS, ceiling)
	res.ReplayEpochs.RatioToCeiling = ratio(res.ReplayEpochs.RowsPerS, ceiling)
	if !env.keep {
		os.RemoveAll(dir)
	}
	return res, nil
}

// settle has PostgreSQL write out what earlier parts of the benchmark left dirty (an 8M-row
// table's pages, the output tables of predictions), so that a checkpoint they triggered is
// not counted in the next measurement's time and PostgreSQL CPU.
func settle(ctx context.Context, pool *pgxpool.Pool) error {
	if _, err := pool.Exec(ctx, "checkpoint"); err != nil {
		return fmt.Errorf("checkpoint before a measurement: %w", err)
	}
	return nil
}

// settledPGCPU reads PostgreSQL's CPU time once the backends of the stopped roles have been
// reaped (their time is added to the postmaster's when they are), waiting at most 2 s.
func settledPGCPU(dataDir string) float64 {
	last := pgCPUSeconds(dataDir)
	for range 40 {
		time.Sleep(50 * time.Millisecond)
		now := pgCPUSeconds(dataDir)
		if now == last {
			return now
		}
		last = now
	}
	return last
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// measureJob submits the job, follows it to its end, and reads the trainer's first-step time.
func measureJob(ctx context.Context, c *cluster, table string, cfg e2eConfig, pgDataDir string) (*e2eResult, error) {
	cl := client.New(c.coordURL, slog.New(slog.DiscardHandler))
	pgBefore := pgCPUSeconds(pgDataDir)
	sent := time.Now()
	st, err := cl.Submit(ctx, jobSpec(table, cfg.Model, cfg.Epochs))
	if err != nil {
		return nil, fmt.Errorf("submitting: %w", err)
	}
	planned := time.Now()
	res := &e2eResult{e2eConfig: cfg, JobID: st.ID, Rows: st.Rows, Ranges: st.Ranges, Replay: st.Replay,
		PlanSeconds: planned.Sub(sent).Seconds()}
	res.PlanPGCPUSeconds = pgCPUSeconds(pgDataDir) - pgBefore

	// The status is polled often enough that its period is small against an epoch; the
	// roles' own timings (the trainer's epoch seconds) are kept beside it.
	var epochSeen []time.Time
	var final *messages.JobStatus
	err = waitFor(ctx, 30*time.Minute, "the job to end", c.all(), func() bool {
		s, err := cl.Job(ctx, st.ID)
		if err != nil {
			return false
		}
		for len(epochSeen) < len(s.Results) {
			epochSeen = append(epochSeen, time.Now())
		}
		if s.State == messages.JobDone || s.State == messages.JobFailed {
			final = s
			return true
		}
		return false
	})
	if err != nil {
		return nil, err
	}
	if final.State != messages.JobDone {
		return nil, fmt.Errorf("job %s %s: %s", final.ID, final.State, final.Error)
	}
	if len(final.Results) != cfg.Epochs || len(epochSeen) < 1 {
		return nil, fmt.Errorf("job %s ended with %d epoch results, want %d", final.ID, len(final.Results), cfg.Epochs)
	}
	// The trainer exits after its one job; its first-step file is complete by then.
	select {
	case <-c.trainer.done:
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("the trainer did not exit after the job")
	}
	if err := c.trainer.exitErr(); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(c.dir, "first_step"))
	if err != nil {
		return nil, fmt.Errorf("the trainer wrote no first-step time: %w", err)
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return nil, err
	}
	res.TimeToFirstBatch = time.Unix(0, ns).Sub(sent).Seconds()
	res.WallSeconds = time.Since(sent).Seconds()

	rows := final.Results[0].Seen.Rows
	res.Rows = rows
	res.FirstEpoch = newRate(rows, epochSeen[0].Sub(planned).Seconds(), 0)
	res.FirstEpochWithPlan = newRate(rows, epochSeen[0].Sub(sent).Seconds(), 0)
	var replayRows int64
	var replaySeconds float64
	for i, r := range final.Results {
		res.TrainerEpochSeconds = append(res.TrainerEpochSeconds, r.Seconds)
		res.Loss = append(res.Loss, r.Loss)
		if i > 0 {
			replayRows += r.Seen.Rows
			replaySeconds += r.Seconds
		}
	}
	if len(final.Results) > 1 {
		res.ReplayEpochs = newRate(replayRows, replaySeconds, 0)
	}
	return res, nil
}

func dialable(port int) bool {
	conn, err := dialTimeout(port)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// label names the run's model, and its tuning variant if it has one.
func (c e2eConfig) label() string {
	if c.Env == "" {
		return c.Model
	}
	return c.Model + " (" + c.Env + ")"
}
