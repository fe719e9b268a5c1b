package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
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
