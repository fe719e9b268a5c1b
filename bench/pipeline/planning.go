package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/internal/devenv"
	"pgtrain/internal/local"
	"pgtrain/internal/pgutil"
)

// planningRun is planning against one binary COPY of the planned columns, side by side.
type planningRun struct {
	Rows int64 `json:"rows"`
	// PlanSeconds are the submissions' round trips (schema check, statistics, range split),
	// CopySeconds the binary COPYs of the key and every planned column, alternated with them.
	PlanSeconds []float64 `json:"plan_seconds"`
	CopySeconds []float64 `json:"copy_seconds"`
	// Ratio is the median plan over the median COPY: the target is at most 1.2.
	Ratio float64 `json:"plan_to_copy"`
}

// measurePlanning plans the job of the end-to-end runs on table several times with a
// coordinator alone (no workers: nothing else competes), each time beside a binary COPY of
// the same columns, which is what one pass over the data costs.
func measurePlanning(ctx context.Context, dsn, table string, runs int) (*planningRun, error) {
	pool, err := pgutil.NewPool(ctx, dsn, 4)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	ns, err := devenv.StartNATS(devenv.NATSOptions{})
	if err != nil {
		return nil, err
	}
	defer ns.Stop()
	c, err := local.Start(ctx, local.Options{Sources: map[string]*pgxpool.Pool{"": pool}, NATSURL: ns.URL,
		Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	defer c.Stop()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	res := &planningRun{}
	// One unrecorded COPY brings the table into the page cache.
	if _, err := copyCeiling(ctx, conn.Conn(), table); err != nil {
		return nil, err
	}
	for range runs {
		t0 := time.Now()
		out, err := copyCeiling(ctx, conn.Conn(), table)
		if err != nil {
			return nil, err
		}
		res.CopySeconds = append(res.CopySeconds, time.Since(t0).Seconds())
		res.Rows = out.Rows
		t0 = time.Now()
		st, err := c.Client.Submit(ctx, jobSpec(table, modelNoop, 1))
		if err != nil {
			return nil, fmt.Errorf("planning %s: %w", table, err)
		}
		res.PlanSeconds = append(res.PlanSeconds, time.Since(t0).Seconds())
		if st.Rows != out.Rows {
			return nil, fmt.Errorf("planning %s: %d rows planned, %d copied", table, st.Rows, out.Rows)
		}
	}
	res.Ratio = ratio(median(res.PlanSeconds), median(res.CopySeconds))
	return res, nil
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	return s[len(s)/2]
}

func (r *planningRun) String() string {
	return fmt.Sprintf("planning %d rows: %.2fs (median of %d), binary COPY of the planned columns %.2fs: %.2f×",
		r.Rows, median(r.PlanSeconds), len(r.PlanSeconds), median(r.CopySeconds), r.Ratio)
}

// planningMode measures planning alone, beside a binary COPY of the planned columns, at
// each size: on a throwaway cluster, or on --dsn (its tables bench_<rows> are created when
// missing and kept). --cpuprofile profiles this process, which plans in its coordinator.
func planningMode(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("planning", flag.ContinueOnError)
	sizes := fs.String("rows", "2000000,8000000", "table sizes, comma-separated")
	runs := fs.Int("runs", 3, "plans (each beside a COPY) per size; the ratio is of the medians")
	dsn := fs.String("dsn", "", "PostgreSQL to use instead of a throwaway cluster")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the planning runs to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ns, err := parseInts(*sizes)
	if err != nil {
		return fmt.Errorf("--rows %w", err)
	}
	if *dsn == "" {
		dir, err := os.MkdirTemp("", "pgtrain-planning-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		// The server runs as its own user when this runs as root.
		if err := os.Chmod(dir, 0o755); err != nil {
			return err
		}
		pg, err := devenv.StartPostgres(ctx, devenv.PostgresOptions{Dir: filepath.Join(dir, "postgres")})
		if err != nil {
			return err
		}
		defer pg.Stop()
		*dsn = pg.DSN
	}
	pool, err := pgutil.NewPool(ctx, *dsn, 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	for _, n := range ns {
		var exists bool
		if err := pool.QueryRow(ctx, "select to_regclass($1) is not null", tableName(n)).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			fmt.Printf("creating %s (%d rows)\n", tableName(n), n)
			if err := createTable(ctx, pool, tableName(n), n); err != nil {
				return err
			}
		}
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	for _, n := range ns {
		pr, err := measurePlanning(ctx, *dsn, tableName(n), *runs)
		if err != nil {
			return err
		}
		fmt.Println(pr)
		fmt.Printf("  plan %s\n  COPY %s\n", seconds(pr.PlanSeconds), seconds(pr.CopySeconds))
	}
	return nil
}

func seconds(xs []float64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(s, " ")
}
