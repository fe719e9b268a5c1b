package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
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
	// SplitCopySeconds are the same COPY cut in two halves of the table's blocks, read at
	// once on two connections: what one pass over the planned columns can take at best on
	// this machine, the floor of any plan that reads them all (and so of the first batch).
	SplitCopySeconds []float64 `json:"split_copy_seconds"`
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
		if err := splitCopy(ctx, pool, table, out.Rows); err != nil {
			return nil, err
		}
		res.SplitCopySeconds = append(res.SplitCopySeconds, time.Since(t0).Seconds())
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

// splitCopy copies the planned columns of table in two halves of its blocks (TID range
// scans) on two connections at once.
func splitCopy(ctx context.Context, pool *pgxpool.Pool, table string, rows int64) error {
	var blocks int64
	if err := pool.QueryRow(ctx, "select pg_relation_size($1::regclass) / current_setting('block_size')::int8", table).Scan(&blocks); err != nil {
		return err
	}
	where := []string{fmt.Sprintf("ctid < '(%d,0)'::tid", blocks/2), fmt.Sprintf("ctid >= '(%d,0)'::tid", blocks/2)}
	copied := make([]int64, len(where))
	errs := make([]error, len(where))
	var wg sync.WaitGroup
	for i, w := range where {
		wg.Go(func() {
			conn, err := pool.Acquire(ctx)
			if err != nil {
				errs[i] = err
				return
			}
			defer conn.Release()
			var d countingDiscard
			tag, err := conn.Conn().PgConn().CopyTo(ctx, &d, fmt.Sprintf("copy (select %s from %s where %s) to stdout with (format binary)",
				columnList(), pgx.Identifier{table}.Sanitize(), w))
			copied[i], errs[i] = tag.RowsAffected(), err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("copying %s in two halves: %w", table, err)
	}
	if copied[0]+copied[1] != rows {
		return fmt.Errorf("copying %s in two halves: %d and %d rows, want %d", table, copied[0], copied[1], rows)
	}
	return nil
}

// writePlanning is the planning part of results.md.
func writePlanning(p func(string, ...any), runs []*planningRun) {
	if len(runs) == 0 {
		return
	}
	p("\nPlanning (the submission's round trip with a coordinator and no workers: schema check, the key's least and greatest values from its index, then on up to three connections in one snapshot the statistics (binary COPYs of disjoint block ranges of the planned columns and the key, every number summed exactly in Go, the category counted with its vocabulary, the keys counted and checksummed in equal-width buckets), merged exactly, and the ranges cut at row-count quantiles from the key buckets, a bucket of clustered keys read key by key) beside one binary COPY of the same columns, and that COPY in two halves on two connections at once (the best a full pass can do here), alternated, medians of %d runs:\n\n| rows | plan (s) | COPY (s) | COPY in two halves at once (s) | plan / COPY |\n|---:|---:|---:|---:|---:|\n", len(runs[0].PlanSeconds))
	for _, pr := range runs {
		p("| %s | %.2f | %.2f | %.2f | %.2f |\n", human(int(pr.Rows)), median(pr.PlanSeconds), median(pr.CopySeconds), median(pr.SplitCopySeconds), pr.Ratio)
	}
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	return s[len(s)/2]
}

func (r *planningRun) String() string {
	return fmt.Sprintf("planning %d rows: %.2fs (median of %d), binary COPY of the planned columns %.2fs: %.2f× (the COPY in two halves at once %.2fs)",
		r.Rows, median(r.PlanSeconds), len(r.PlanSeconds), median(r.CopySeconds), r.Ratio, median(r.SplitCopySeconds))
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
		fmt.Printf("  plan %s\n  COPY %s\n  COPY in two halves %s\n", seconds(pr.PlanSeconds), seconds(pr.CopySeconds), seconds(pr.SplitCopySeconds))
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
