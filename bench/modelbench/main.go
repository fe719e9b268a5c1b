// Command modelbench measures the Go model engine's training throughput against
// TensorFlow.js (pure-JS cpu backend) on the same models, and the GFLOP/s the engine reaches
// against the machine's float32 matrix-multiply peak (OpenBLAS sgemm, measured in the same
// run when built with -tags openblas).
//
//	go run -tags openblas ./bench/modelbench -out bench/model_results.json
//
// Models: "small" is 100k × 16 features, dense(64 relu) → dense(64 relu) → dense(1), batch
// 256, MSE; "large" is 256 features → dense(512 relu) → dense(512 relu) → dense(10 softmax),
// batch 1024, categorical crossentropy. Both train with Adam, shuffling off. Every figure is
// the best of several timed runs (epochs, or sgemm calls) on each side, because the machine
// may be shared: samples/s come from the fastest epoch.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"pgtrain/model"
)

type modelDef struct {
	name    string
	inputs  int
	hidden  []int
	outputs int
	batch   int
}

var (
	small = modelDef{name: "small", inputs: 16, hidden: []int{64, 64}, outputs: 1, batch: 256}
	large = modelDef{name: "large", inputs: 256, hidden: []int{512, 512}, outputs: 10, batch: 1024}
)

// flopsPerSample counts the matrix-product flops of one training sample: the forward
// product, the weight gradient, and the input gradient of every layer but the first.
func (d modelDef) flopsPerSample() float64 {
	dims := append(append([]int{d.inputs}, d.hidden...), d.outputs)
	var macs float64
	for i := 0; i+1 < len(dims); i++ {
		mn := float64(dims[i] * dims[i+1])
		macs += 2 * mn
		if i > 0 {
			macs += mn
		}
	}
	return 2 * macs
}

// ModelResult is one model's figures.
type ModelResult struct {
	Model               string  `json:"model"`
	Batch               int     `json:"batch"`
	GoRows              int     `json:"go_rows"`
	GoEpochs            int     `json:"go_epochs"`
	GoSeconds           float64 `json:"go_seconds"`
	GoSamplesPerS       float64 `json:"go_samples_per_sec"` // fastest epoch
	GoMeanSamplesPerS   float64 `json:"go_mean_samples_per_sec"`
	GoGFLOPS            float64 `json:"go_gflops"`
	FlopsPerSample      float64 `json:"flops_per_sample"`
	TFJSRows            int     `json:"tfjs_rows,omitempty"`
	TFJSSeconds         float64 `json:"tfjs_seconds,omitempty"`
	TFJSSamplesPerS     float64 `json:"tfjs_samples_per_sec,omitempty"` // fastest epoch
	TFJSMeanSamplesPerS float64 `json:"tfjs_mean_samples_per_sec,omitempty"`
	SpeedupVsTFJS       float64 `json:"speedup_vs_tfjs,omitempty"`
	FinalLoss           float64 `json:"final_loss"`
}

// PeakResult is the float32 matrix-multiply peak measured with OpenBLAS.
type PeakResult struct {
	Size    int     `json:"size"`
	GFLOPS  float64 `json:"gflops"`
	Core    string  `json:"openblas_core"`
	Threads int     `json:"openblas_threads"`
	Env     string  `json:"env"`
}

// Results is what -out receives.
type Results struct {
	When            time.Time     `json:"when"`
	Command         string        `json:"command"`
	GoVersion       string        `json:"go_version"`
	GOMAXPROCS      int           `json:"gomaxprocs"`
	Kernel          string        `json:"kernel"`
	Models          []ModelResult `json:"models"`
	EngineSgemm     float64       `json:"engine_sgemm_gflops"`
	EngineSgemmSize int           `json:"engine_sgemm_size"`
	Peak            *PeakResult   `json:"sgemm_peak,omitempty"`
	PeakCandidates  []PeakResult  `json:"sgemm_peak_candidates,omitempty"`
	PeakNote        string        `json:"sgemm_peak_note,omitempty"`
	LargeFracOfPeak float64       `json:"large_fraction_of_peak,omitempty"`
	// The same on one core: the large model at GOMAXPROCS=1 against one OpenBLAS thread.
	LargeOneCoreGFLOPS     float64         `json:"large_one_core_gflops,omitempty"`
	PeakOneThread          *PeakResult     `json:"sgemm_peak_one_thread,omitempty"`
	LargeOneCoreFracOfPeak float64         `json:"large_one_core_fraction_of_peak,omitempty"`
	Targets                map[string]bool `json:"targets"`
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "modelbench:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("modelbench", flag.ContinueOnError)
	out := fs.String("out", "", "write the figures as JSON to this path")
	smallRows := fs.Int("small-rows", 100_000, "rows of the small model's data set")
	smallEpochs := fs.Int("small-epochs", 5, "epochs timed for the small model on Go (the fastest counts)")
	largeRows := fs.Int("large-rows", 32_768, "rows of the large model's data set (Go)")
	largeEpochs := fs.Int("large-epochs", 5, "epochs timed for the large model on Go (the fastest counts)")
	tfjs := fs.Bool("tfjs", true, "also run TensorFlow.js (node parity/bench.mjs)")
	tfjsSmallRows := fs.Int("tfjs-small-rows", 100_000, "rows TF.js trains on for the small model")
	tfjsLargeRows := fs.Int("tfjs-large-rows", 2048, "rows TF.js trains on for the large model (it is slow)")
	tfjsEpochs := fs.Int("tfjs-epochs", 2, "epochs timed on TF.js (the fastest counts)")
	oneCore := fs.Bool("one-core", true, "also time the large model on one core (GOMAXPROCS=1) against one OpenBLAS thread: a shared machine more often has one core free than two")
	peakOnly := fs.Bool("peak-only", false, "internal: measure the OpenBLAS peak and print it as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *peakOnly {
		p, err := measurePeak()
		if err != nil {
			return err
		}
		return json.NewEncoder(stdout).Encode(p)
	}
	res := Results{When: time.Now().UTC(), Command: "go run " + buildTags() + "./bench/modelbench " + strings.Join(args, " "),
		GoVersion: runtime.Version(), GOMAXPROCS: runtime.GOMAXPROCS(0), Kernel: model.KernelName(), Targets: map[string]bool{}}
	res.Command = strings.TrimSpace(res.Command)

	root, err := repoRoot()
	if err != nil {
		return err
	}
	for _, c := range []struct {
		def          modelDef
		rows, epochs int
		tfjsRows     int
	}{{small, *smallRows, *smallEpochs, *tfjsSmallRows}, {large, *largeRows, *largeEpochs, *tfjsLargeRows}} {
		fmt.Fprintf(os.Stderr, "go %s: %d rows × %d epochs...\n", c.def.name, c.rows, c.epochs)
		mr, err := benchGo(c.def, c.rows, c.epochs)
		if err != nil {
			return fmt.Errorf("%s model: %w", c.def.name, err)
		}
		if *tfjs {
			fmt.Fprintf(os.Stderr, "tfjs %s: %d rows...\n", c.def.name, c.tfjsRows)
			t, err := benchTFJS(root, c.def.name, c.tfjsRows, *tfjsEpochs)
			if err != nil {
				return fmt.Errorf("%s model on TF.js: %w", c.def.name, err)
			}
			mr.TFJSRows, mr.TFJSSeconds, mr.TFJSSamplesPerS = c.tfjsRows, t.Seconds, t.SamplesPerSec
			mr.TFJSMeanSamplesPerS = t.MeanSamplesPerSec
			mr.SpeedupVsTFJS = mr.GoSamplesPerS / t.SamplesPerSec
			res.Targets[c.def.name+"_10x_tfjs"] = mr.SpeedupVsTFJS >= 10
		}
		res.Models = append(res.Models, mr)
	}

	if *oneCore {
		fmt.Fprintf(os.Stderr, "go large on one core: %d rows × %d epochs...\n", *largeRows, *largeEpochs)
		prev := runtime.GOMAXPROCS(1)
		mr, err := benchGo(large, *largeRows, *largeEpochs)
		runtime.GOMAXPROCS(prev)
		if err != nil {
			return fmt.Errorf("large model on one core: %w", err)
		}
		res.LargeOneCoreGFLOPS = mr.GoGFLOPS
	}

	res.EngineSgemmSize = 2048
	res.EngineSgemm = engineSgemm(res.EngineSgemmSize)
	if openblasBuilt {
		res.PeakCandidates, res.PeakNote = peakCandidates()
		for i := range res.PeakCandidates {
			if res.Peak == nil || res.PeakCandidates[i].GFLOPS > res.Peak.GFLOPS {
				res.Peak = &res.PeakCandidates[i]
			}
		}
		if res.Peak != nil {
			res.LargeFracOfPeak = res.Models[1].GoGFLOPS / res.Peak.GFLOPS
			res.Targets["large_25pct_of_sgemm_peak"] = res.LargeFracOfPeak >= 0.25
			if *oneCore {
				p, note := peakOneThread(res.Peak)
				if p != nil {
					res.PeakOneThread = p
					res.LargeOneCoreFracOfPeak = res.LargeOneCoreGFLOPS / p.GFLOPS
				} else {
					res.PeakNote = strings.TrimPrefix(res.PeakNote+"; "+note, "; ")
				}
			}
		}
	} else {
		res.PeakNote = "not measured: build with -tags openblas (apt-get install libopenblas-dev) to measure the OpenBLAS sgemm peak"
	}
	printTable(stdout, &res)
	if *out != "" {
		b, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func buildTags() string {
	if openblasBuilt {
		return "-tags openblas "
	}
	return ""
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from inside the pgtrain module (go.mod not found)")
		}
		dir = parent
	}
}

// data draws the benchmark data set: N(0,1) features; a regression target or one-hot classes.
func data(d modelDef, rows int) (x, y []float32) {
	r := rand.New(rand.NewPCG(1, uint64(d.inputs)))
	x = make([]float32, rows*d.inputs)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	y = make([]float32, rows*d.outputs)
	for i := 0; i < rows; i++ {
		if d.outputs == 1 {
			y[i] = float32(math.Sin(float64(x[i*d.inputs])) + 0.5*float64(x[i*d.inputs+1]))
		} else {
			y[i*d.outputs+r.IntN(d.outputs)] = 1
		}
	}
	return x, y
}

func benchGo(d modelDef, rows, epochs int) (ModelResult, error) {
	var layers []string
	for _, h := range d.hidden {
		layers = append(layers, fmt.Sprintf(`{"type":"dense","units":%d,"activation":"relu"}`, h))
	}
	act, loss := "linear", "mse"
	if d.outputs > 1 {
		act, loss = "softmax", "categorical_crossentropy"
	}
	layers = append(layers, fmt.Sprintf(`{"type":"dense","units":%d,"activation":"%s"}`, d.outputs, act))
	spec, err := model.ParseSpec([]byte(`{"layers":[` + strings.Join(layers, ",") + `]}`))
	if err != nil {
		return ModelResult{}, err
	}
	m, err := model.New(spec, d.inputs, model.Compile{Loss: loss, Optimizer: model.OptimizerConfig{Name: "adam"}}, 1)
	if err != nil {
		return ModelResult{}, err
	}
	x, y := data(d, rows)
	// Warm up: buffers sized, pages touched.
	if _, err := m.TrainOnBatch(x[:d.batch*d.inputs], y[:d.batch*d.outputs], d.batch); err != nil {
		return ModelResult{}, err
	}
	// Each epoch is timed on its own and the fastest one gives the throughput: the machine may
	// be shared, and the TF.js side and the sgemm peak are measured the same way.
	start := time.Now()
	mark := start
	best := math.Inf(1)
	h, err := m.Fit(x, y, rows, model.FitOptions{Epochs: epochs, BatchSize: d.batch,
		OnEpochEnd: func(int, map[string]float64) error {
			best = math.Min(best, time.Since(mark).Seconds())
			mark = time.Now()
			return nil
		}})
	if err != nil {
		return ModelResult{}, err
	}
	sec := time.Since(start).Seconds()
	sps := float64(rows) / best
	losses := h.History["loss"]
	return ModelResult{Model: d.name, Batch: d.batch, GoRows: rows, GoEpochs: epochs, GoSeconds: sec, GoSamplesPerS: sps,
		GoMeanSamplesPerS: float64(rows*epochs) / sec,
		FlopsPerSample:    d.flopsPerSample(), GoGFLOPS: sps * d.flopsPerSample() / 1e9, FinalLoss: losses[len(losses)-1]}, nil
}

type tfjsResult struct {
	Seconds           float64 `json:"seconds"`
	SamplesPerSec     float64 `json:"samples_per_sec"`
	MeanSamplesPerSec float64 `json:"mean_samples_per_sec"`
	TFJS              string  `json:"tfjs"`
	Backend           string  `json:"backend"`
}

func benchTFJS(root, which string, rows, epochs int) (tfjsResult, error) {
	if _, err := os.Stat(filepath.Join(root, "parity", "node_modules", "@tensorflow", "tfjs")); err != nil {
		return tfjsResult{}, errors.New("TensorFlow.js is not installed: run `npm ci --prefix parity` (or pass -tfjs=false)")
	}
	cmd := exec.Command("node", filepath.Join(root, "parity", "bench.mjs"), which, fmt.Sprint(rows), fmt.Sprint(epochs))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return tfjsResult{}, fmt.Errorf("%v: %s", err, stderr.String())
	}
	var t tfjsResult
	if err := json.Unmarshal(lastLine(stdout.Bytes()), &t); err != nil {
		return t, fmt.Errorf("reading bench.mjs output %q: %w", stdout.String(), err)
	}
	if t.TFJS != "4.22.0" || t.Backend != "cpu" {
		return t, fmt.Errorf("bench.mjs ran TF.js %s on %q, want 4.22.0 on cpu", t.TFJS, t.Backend)
	}
	return t, nil
}

func lastLine(b []byte) []byte {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	return lines[len(lines)-1]
}

// engineSgemm is the engine's own C = A·B rate on n×n matrices, best of a few runs.
func engineSgemm(n int) float64 {
	a, b, c := randMat(n*n, 1), randMat(n*n, 2), make([]float32, n*n)
	best := 0.0
	for i, t0 := 0, time.Now(); i < 6 || time.Since(t0) < 2*time.Second; i++ {
		start := time.Now()
		_ = model.MatMul(n, n, n, a, b, c)
		best = math.Max(best, 2*math.Pow(float64(n), 3)/time.Since(start).Seconds()/1e9)
	}
	return best
}

func randMat(n int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 7))
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64())
	}
	return s
}

// measurePeak times OpenBLAS sgemm on square matrices in this process, best of several runs.
func measurePeak() (PeakResult, error) {
	const n = 2048
	a, b, c := randMat(n*n, 1), randMat(n*n, 2), make([]float32, n*n)
	openblasSgemm(n, n, n, a, b, c) // warm-up: thread pool, pages
	// Best of at least six runs and two seconds: the machine may be shared, and a peak is
	// what the library reaches when nothing else runs.
	best := 0.0
	for i, t0 := 0, time.Now(); i < 6 || time.Since(t0) < 2*time.Second; i++ {
		start := time.Now()
		openblasSgemm(n, n, n, a, b, c)
		best = math.Max(best, 2*math.Pow(n, 3)/time.Since(start).Seconds()/1e9)
	}
	core, threads := openblasInfo()
	// Some OpenBLAS kernels compute wrong results on CPUs newer than the library: a peak
	// only counts if the product is right.
	r := rand.New(rand.NewPCG(3, 4))
	for t := 0; t < 32; t++ {
		i, j := r.IntN(n), r.IntN(n)
		var want float64
		for p := 0; p < n; p++ {
			want += float64(a[i*n+p]) * float64(b[p*n+j])
		}
		if math.Abs(float64(c[i*n+j])-want) > 1e-3*math.Sqrt(n) {
			return PeakResult{}, fmt.Errorf("OpenBLAS (core %s) computed C[%d,%d] = %v, want %v", core, i, j, c[i*n+j], want)
		}
	}
	return PeakResult{Size: n, GFLOPS: best, Core: core, Threads: threads}, nil
}

// peakCandidates measures the OpenBLAS peak in child processes: once with the environment as
// it is, and once letting OpenBLAS pick its kernel for the CPU itself (OPENBLAS_CORETYPE
// pins an older kernel on some machines). The fastest is the peak.
func peakCandidates() ([]PeakResult, string) {
	labels := []string{"environment as given"}
	if os.Getenv("OPENBLAS_CORETYPE") != "" || os.Getenv("OPENBLAS_L2_SIZE") != "" {
		labels = append(labels, "OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset", "OPENBLAS_CORETYPE=SkylakeX")
	}
	var out []PeakResult
	var notes []string
	for _, label := range labels {
		p, err := peakIn(peakEnv(label))
		if err != nil {
			notes = append(notes, fmt.Sprintf("%s: %v", label, err))
			continue
		}
		p.Env = label
		out = append(out, *p)
	}
	return out, strings.Join(notes, "; ")
}

// peakEnv is the environment of the candidate with this label.
func peakEnv(label string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if label != "environment as given" && (strings.HasPrefix(kv, "OPENBLAS_CORETYPE=") || strings.HasPrefix(kv, "OPENBLAS_L2_SIZE=")) {
			continue
		}
		env = append(env, kv)
	}
	if label == "OPENBLAS_CORETYPE=SkylakeX" {
		env = append(env, label)
	}
	return env
}

// peakOneThread measures the peak as best did, with one OpenBLAS thread.
func peakOneThread(best *PeakResult) (*PeakResult, string) {
	var env []string
	for _, kv := range peakEnv(best.Env) {
		if !strings.HasPrefix(kv, "OPENBLAS_NUM_THREADS=") && !strings.HasPrefix(kv, "OMP_NUM_THREADS=") {
			env = append(env, kv)
		}
	}
	p, err := peakIn(append(env, "OPENBLAS_NUM_THREADS=1"))
	if err != nil {
		return nil, "one-thread peak: " + err.Error()
	}
	if p.Threads != 1 {
		return nil, fmt.Sprintf("one-thread peak: OpenBLAS ran %d threads", p.Threads)
	}
	p.Env = best.Env + ", OPENBLAS_NUM_THREADS=1"
	return p, ""
}

// peakIn measures the peak in a child process with the environment env.
func peakIn(env []string) (*PeakResult, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-peak-only")
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%v %s", err, strings.TrimSpace(stderr.String()))
	}
	var p PeakResult
	if err := json.Unmarshal(lastLine(stdout.Bytes()), &p); err != nil {
		return nil, err
	}
	return &p, nil
}

func printTable(w io.Writer, r *Results) {
	fmt.Fprintf(w, "engine kernel %s, GOMAXPROCS %d, %s; samples/s of the fastest epoch\n", r.Kernel, r.GOMAXPROCS, r.GoVersion)
	fmt.Fprintf(w, "%-6s %6s %14s %10s %16s %9s\n", "model", "batch", "go samples/s", "go GFLOP/s", "tfjs samples/s", "go/tfjs")
	for _, m := range r.Models {
		tf, ratio := "-", "-"
		if m.TFJSSamplesPerS > 0 {
			tf, ratio = fmt.Sprintf("%.0f", m.TFJSSamplesPerS), fmt.Sprintf("%.1f×", m.SpeedupVsTFJS)
		}
		fmt.Fprintf(w, "%-6s %6d %14.0f %10.1f %16s %9s\n", m.Model, m.Batch, m.GoSamplesPerS, m.GoGFLOPS, tf, ratio)
	}
	fmt.Fprintf(w, "engine sgemm %d³: %.1f GFLOP/s\n", r.EngineSgemmSize, r.EngineSgemm)
	for _, p := range r.PeakCandidates {
		fmt.Fprintf(w, "openblas sgemm %d³ (%s, core %s, %d threads): %.1f GFLOP/s\n", p.Size, p.Env, p.Core, p.Threads, p.GFLOPS)
	}
	if r.Peak != nil {
		fmt.Fprintf(w, "large model: %.1f GFLOP/s = %.0f%% of the sgemm peak %.1f GFLOP/s\n", r.Models[1].GoGFLOPS, 100*r.LargeFracOfPeak, r.Peak.GFLOPS)
	}
	if r.PeakOneThread != nil {
		fmt.Fprintf(w, "large model on one core: %.1f GFLOP/s = %.0f%% of one OpenBLAS thread's peak %.1f GFLOP/s\n", r.LargeOneCoreGFLOPS, 100*r.LargeOneCoreFracOfPeak, r.PeakOneThread.GFLOPS)
	} else if r.LargeOneCoreGFLOPS > 0 {
		fmt.Fprintf(w, "large model on one core: %.1f GFLOP/s\n", r.LargeOneCoreGFLOPS)
	}
	if r.PeakNote != "" {
		fmt.Fprintln(w, "note:", r.PeakNote)
	}
	for k, v := range r.Targets {
		fmt.Fprintf(w, "target %s: %v\n", k, v)
	}
}
