package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// options are the flags of a benchmark run.
type options struct {
	rows          int
	out           string
	memRows       string
	fetchers      string
	preprocessors int
	scorers       int
	// compare is another pgtrain binary, whose scorers (compareWhole: whose every role but
	// the NATS server) the prediction alternates with this binary's.
	compare      string
	compareWhole bool
	noopEpochs   int
	mlpEpochs    int
	sweepEpochs  int
	ceilingRuns  int
	memRepeats   int
	variantEnv   string
	pgtrain      string
	python       string
	baselinePy   string
	keep         bool
	profile      string
	profileModel string
	skip         map[string]bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch {
	case len(os.Args) > 1 && os.Args[1] == "baseline":
		err = baselineMode(ctx, os.Args[2:])
	case len(os.Args) > 1 && os.Args[1] == "trainer":
		err = runTrainerRole(ctx, os.Args[2:])
	case len(os.Args) > 1 && os.Args[1] == "planning":
		err = planningMode(ctx, os.Args[2:])
	case len(os.Args) > 1 && os.Args[1] == "compare":
		err = compareMode(ctx, os.Args[2:])
	default:
		err = benchMode(ctx, os.Args[1:])
	}
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "pipeline:", err)
		os.Exit(1)
	}
}

func baselineMode(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("baseline", flag.ContinueOnError)
	name := fs.String("name", "", "copy, fetchall, cursor or csv")
	dsn := fs.String("dsn", "", "PostgreSQL connection string")
	table := fs.String("table", "", "table to read")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return runBaseline(ctx, *name, *dsn, *table, os.Stdout)
}

func benchMode(ctx context.Context, args []string) error {
	var o options
	fs := flag.NewFlagSet("pipeline", flag.ContinueOnError)
	fs.IntVar(&o.rows, "rows", 2_000_000, "rows in the benchmark table")
	fs.StringVar(&o.out, "out", "bench", "directory for results.md and results.json")
	fs.StringVar(&o.memRows, "mem-rows", "", "the two table sizes of the memory runs, comma-separated (default rows/2,rows*4: 1M and 8M for the default 2M, the sizes the issue compares)")
	fs.StringVar(&o.fetchers, "fetchers", "1,2,4", "fetcher counts of the end-to-end runs")
	fs.IntVar(&o.preprocessors, "preprocessors", 1, "preprocessor processes in every end-to-end run")
	fs.IntVar(&o.scorers, "scorers", 2, "scorer processes of the prediction run (pgtrain up runs two)")
	compareScorer := fs.String("compare-scorer", "", "another pgtrain binary: the prediction runs four times in the same cluster, its scorers and this binary's in turn (the first run is the reported one)")
	comparePgtrain := fs.String("compare-pgtrain", "", "another pgtrain binary: as --compare-scorer, with the coordinator, the fetchers and the preprocessors swapped too before every run (whole builds, same NATS server and PostgreSQL)")
	fs.IntVar(&o.noopEpochs, "noop-epochs", 3, "epochs of the no-op model runs (the first reads PostgreSQL, the others replay)")
	fs.IntVar(&o.mlpEpochs, "mlp-epochs", 2, "epochs of the MLP runs")
	fs.IntVar(&o.sweepEpochs, "sweep-epochs", 1, "epochs of the sweep runs (section 7)")
	fs.IntVar(&o.ceilingRuns, "ceiling-runs", 3, "binary COPY runs; the ceiling is their median")
	fs.StringVar(&o.variantEnv, "variant-env", "GOGC=400", `environment of one more no-op run beside the defaults (a tuning variant, never a headline figure); "" for none`)
	fs.IntVar(&o.memRepeats, "mem-repeats", 2, "runs at each size of the memory runs; a role's peak is the largest")
	fs.StringVar(&o.pgtrain, "pgtrain", "", "the pgtrain binary (default: build it from this module)")
	fs.StringVar(&o.python, "python", "auto", `Python with psycopg2, NumPy and pandas: "auto" (Debian's /usr/bin/python3, then python3 on PATH), a path, or "off"`)
	fs.StringVar(&o.baselinePy, "baseline-py", "", "the Python baselines (default bench/baseline.py of this module)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (role logs) after the run")
	fs.StringVar(&o.profile, "profile", "", "instead of the benchmark, run one job with every role in this process and write a CPU profile to this directory")
	fs.StringVar(&o.profileModel, "profile-model", modelNoop, "model of the profiled job: noop or mlp")
	skip := fs.String("skip", "", "parts to leave out while working on another, comma-separated: baselines, python, mlp, memory, planning, prediction, sweep")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.skip = map[string]bool{}
	for _, part := range strings.Split(*skip, ",") {
		switch part = strings.TrimSpace(part); part {
		case "":
		case "baselines", "python", "mlp", "memory", "planning", "prediction", "sweep":
			o.skip[part] = true
		default:
			return fmt.Errorf("--skip %q: unknown part %q", *skip, part)
		}
	}
	if *compareScorer != "" && *comparePgtrain != "" {
		return fmt.Errorf("--compare-scorer and --compare-pgtrain: give one")
	}
	if o.compare, o.compareWhole = *compareScorer, *comparePgtrain != ""; o.compareWhole {
		o.compare = *comparePgtrain
	}
	if o.compare != "" {
		abs, err := filepath.Abs(o.compare)
		if err != nil {
			return err
		}
		o.compare = abs
	}
	if o.sweepEpochs < 1 {
		return fmt.Errorf("--sweep-epochs %d: want at least 1", o.sweepEpochs)
	}
	if o.scorers < 1 {
		return fmt.Errorf("--scorers %d: want at least 1", o.scorers)
	}
	if o.rows < 1000 {
		return fmt.Errorf("--rows %d: want at least 1000", o.rows)
	}
	env, err := newHarness(ctx, o)
	if err != nil {
		return err
	}
	defer env.close()
	if o.profile != "" {
		return runProfile(ctx, env, o)
	}
	res, err := env.run(ctx, o)
	if err != nil {
		return err
	}
	if err := res.write(o.out); err != nil {
		return err
	}
	res.printSummary(os.Stdout)
	fmt.Printf("\nwrote %s and %s\n", filepath.Join(o.out, "results.md"), filepath.Join(o.out, "results.json"))
	return nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q: want positive integers separated by commas", s)
		}
		out = append(out, n)
	}
	return out, nil
}
