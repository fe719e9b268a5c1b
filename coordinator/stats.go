package coordinator

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/messages"
)

// statColumn is a feature or the label, with what its statistics need.
type statColumn struct {
	col    column
	field  string // the spec field errors name: features[i] or label
	label  bool
	cat    bool // categorical: read as text, counted and its width measured
	vocab  int  // top-K vocabulary size of a one-hot feature, 0 for none
	median bool
}

// colStats is what planning learns about one column.
type colStats struct {
	stats     messages.Stats
	avgText   float64
	nonFinite bool
}

func statColumns(in *planInput) []statColumn {
	cols := make([]statColumn, 0, len(in.features)+1)
	for i, col := range in.features {
		f := in.spec.Features[i]
		c := statColumn{col: col, field: fmt.Sprintf("features[%d]", i),
			cat: f.Encode == messages.EncodeOneHot, median: f.Impute == messages.ImputeMedian}
		if c.cat {
			c.vocab = cmp.Or(f.VocabSize, defaultVocabSize)
		}
		cols = append(cols, c)
	}
	return append(cols, statColumn{col: in.label, field: "label", label: true, cat: in.spec.Label.Encode != messages.EncodeNone})
}

// planConns are the connections planning reads on: its own transaction and, when the
// pool has room, helpers that join its snapshot.
type planConns struct {
	tx   pgx.Tx
	pool *pgxpool.Pool // nil: the transaction alone
	// helpers is how many more connections planning may take from the pool.
	helpers int
	// where is the filters each helper binds to its settings, as the transaction did.
	where []messages.PlannedFilter
}

// computeStats fills the column plans of the features and the label, splits the key space
// and counts the rows and key checksums of each range, in two kinds of pass that run at the
// same time on the connections planning has: the key pass (splitKeys) and the statistics
// of every planned column from binary COPYs of disjoint parts of the table (statsPart),
// merged exactly. Only medians, label classes and a vocabulary too large to count in
// memory are left to SQL. It returns the average text width per categorical column (by
// name) for page sizing, the ranges and their checksums.
func computeStats(ctx context.Context, pc planConns, in *planInput, p *messages.Plan, vocabLimit int) (map[string]float64, []messages.KeyRange, []messages.KeyChecksum, error) {
	cols := statColumns(in)
	parts, err := tableParts(ctx, pc, in)
	if err != nil {
		return nil, nil, nil, err
	}
	var (
		split *keySplit
		stats = make([]*statsPart, len(parts))
	)
	tasks := []func(context.Context, pgx.Tx) error{func(ctx context.Context, tx pgx.Tx) (err error) {
		split, err = splitKeys(ctx, tx, in)
		return err
	}}
	for i, where := range parts {
		tasks = append(tasks, func(ctx context.Context, tx pgx.Tx) (err error) {
			stats[i], err = scanStats(ctx, tx, in, cols, where, vocabLimit)
			return err
		})
	}
	if err := pc.run(ctx, tasks); err != nil {
		return nil, nil, nil, err
	}
	total := stats[0]
	for _, s := range stats[1:] {
		total.merge(s)
	}
	if total.rows != split.rows {
		return nil, nil, nil, fmt.Errorf("computing statistics: %d rows read, %d counted in the same snapshot", total.rows, split.rows)
	}
	out := make([]colStats, len(cols))
	for i, c := range cols {
		s := &out[i]
		if c.cat {
			s.stats.Count = total.text[i].count
			if s.stats.Count > 0 {
				s.avgText = float64(total.text[i].bytes) / float64(s.stats.Count)
			}
			continue
		}
		m := total.moments[i]
		s.stats.Count = m.count
		s.stats.Mean, s.stats.StdDev = m.meanStdDev()
		s.stats.Min, s.stats.Max = m.min, m.max
		s.nonFinite = m.nonFinite
	}
	if err := medians(ctx, pc.tx, in, cols, out); err != nil {
		return nil, nil, nil, err
	}
	avgText, err := columnPlans(in, p, cols, out, split.rows)
	if err != nil {
		return nil, nil, nil, err
	}
	for i, c := range cols {
		if c.vocab > 0 {
			if p.Features[i].Vocabulary, err = vocabulary(ctx, pc.tx, in, c, total.text[i]); err != nil {
				return nil, nil, nil, err
			}
		}
	}
	return avgText, split.bounds, split.sums, nil
}

// run runs the tasks on the planning transaction and on as many helper connections as the
// pool lends at once, each taking the next task when it is free. A helper the pool cannot
// lend soon is done without: the transaction alone can run every task, so planning never
// waits on connections held by other jobs.
func (pc planConns) run(ctx context.Context, tasks []func(context.Context, pgx.Tx) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	queue := make(chan func(context.Context, pgx.Tx) error, len(tasks))
	for _, t := range tasks {
		queue <- t
	}
	close(queue)
	work := func(tx pgx.Tx) {
		for t := range queue {
			if ctx.Err() != nil {
				return
			}
			if err := t(ctx, tx); err != nil {
				cancel(err)
				return
			}
		}
	}
	var wg sync.WaitGroup
	if pc.pool != nil && len(tasks) > 1 {
		id, err := exportSnapshot(ctx, pc.tx)
		if err != nil {
			return err
		}
		for range min(pc.helpers, len(tasks)-1) {
			wg.Go(func() {
				tx, release, err := borrowSnapshot(ctx, pc.pool, id)
				if err != nil {
					return // the others take its share
				}
				defer release()
				if err := setWhere(ctx, tx, pc.where); err != nil {
					cancel(err)
					return
				}
				work(tx)
			})
		}
	}
	work(pc.tx)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return nil
}

// helperWait bounds how long a helper connection may take to come from the pool.
const helperWait = 2 * time.Second

// exportSnapshot names the planning transaction's snapshot for the helpers.
func exportSnapshot(ctx context.Context, tx pgx.Tx) (string, error) {
	var id string
	if err := tx.QueryRow(ctx, "select pg_export_snapshot()").Scan(&id); err != nil {
		return "", fmt.Errorf("exporting the planning snapshot: %w", err)
	}
	return id, nil
}

// borrowSnapshot opens a read-only transaction on a pooled connection that sees snapshot id.
// The pool has to have an idle connection or room for one: planning does not queue for a
// connection behind other jobs.
func borrowSnapshot(ctx context.Context, pool *pgxpool.Pool, id string) (pgx.Tx, func(), error) {
	if st := pool.Stat(); st.IdleConns() == 0 && st.TotalConns() >= st.MaxConns() {
		return nil, nil, errPoolBusy
	}
	actx, cancel := context.WithTimeout(ctx, helperWait)
	conn, err := pool.Acquire(actx)
	cancel()
	if err != nil {
		return nil, nil, err
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err == nil {
		// The id comes from pg_export_snapshot, never from a request; SET takes no parameters.
		_, err = tx.Exec(ctx, "set transaction snapshot "+quoteLiteral(id))
	}
	if err != nil {
		if tx != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
		conn.Release()
		return nil, nil, err
	}
	return tx, func() {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		conn.Release()
	}, nil
}

var errPoolBusy = errors.New("no idle connection in the pool")

// quoteLiteral is s as an SQL string literal.
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// minPartBlocks is the smallest table (in 8 kB blocks) whose statistics are read in parts.
const minPartBlocks = 1024

// tableParts are the WHERE clauses of the statistics passes: disjoint block ranges (TID
// range scans) of a table, so each part reads its own share of the heap, or the whole
// relation in one pass when it has no ctid (views) or is small.
func tableParts(ctx context.Context, pc planConns, in *planInput) ([]string, error) {
	n := pc.helpers + 1
	// With filters (a subquery, which has no ctid) or a key filter: one read, through
	// the indexes where they help, not the whole heap in parts.
	if pc.pool == nil || n < 2 || (in.rel.kind != "r" && in.rel.kind != "m") || in.conditions() != "" {
		return []string{""}, nil
	}
	var blocks int64
	var version int
	err := pc.tx.QueryRow(ctx, "select pg_relation_size($1::oid) / current_setting('block_size')::int8, current_setting('server_version_num')::int",
		in.rel.oid).Scan(&blocks, &version)
	if err != nil {
		return nil, fmt.Errorf("sizing %s.%s: %w", in.rel.schema, in.rel.name, err)
	}
	// TID range scans came in PostgreSQL 14; before, each part would scan the whole table.
	if version < 140000 || blocks < minPartBlocks {
		return []string{""}, nil
	}
	parts := make([]string, n)
	for i := range n {
		lo := blocks * int64(i) / int64(n)
		switch {
		case i == 0:
			parts[i] = fmt.Sprintf(" where ctid < '(%d,0)'::tid", blocks/int64(n))
		case i == n-1: // open: blocks added since are read too
			parts[i] = fmt.Sprintf(" where ctid >= '(%d,0)'::tid", lo)
		default:
			parts[i] = fmt.Sprintf(" where ctid >= '(%d,0)'::tid and ctid < '(%d,0)'::tid", lo, blocks*int64(i+1)/int64(n))
		}
	}
	return parts, nil
}

// medians runs one aggregate query for the median of each numeric feature imputed by it.
func medians(ctx context.Context, tx pgx.Tx, in *planInput, cols []statColumn, out []colStats) error {
	var items []string
	var targets []any
	for i, c := range cols {
		if c.median && !c.cat {
			items = append(items, fmt.Sprintf("coalesce(percentile_cont(0.5) within group (order by %s::float8), 0)", pgx.Identifier{c.col.name}.Sanitize()))
			targets = append(targets, &out[i].stats.Median)
		}
	}
	if len(items) == 0 {
		return nil
	}
	sql := "select " + strings.Join(items, ", ") + " from " + in.source()
	if err := tx.QueryRow(ctx, sql).Scan(targets...); err != nil {
		return fmt.Errorf("computing medians: %w", err)
	}
	return nil
}

// columnPlans turns the statistics into the plans of the features and the label, checking
// what the data must satisfy.
func columnPlans(in *planInput, p *messages.Plan, cols []statColumn, out []colStats, rows int64) (map[string]float64, error) {
	avgText := map[string]float64{}
	for i, c := range cols {
		s := out[i].stats
		s.Nulls = rows - s.Count
		cp := messages.ColumnPlan{Name: c.col.name, PGType: c.col.pgType, Kind: messages.KindNumeric, Factor: 1, Stats: s}
		if c.cat {
			cp.Kind = messages.KindCategorical
			avgText[c.col.name] = out[i].avgText
		} else if out[i].nonFinite || math.IsNaN(s.Median) || math.IsInf(s.Median, 0) {
			field := c.field + ".column"
			if c.label {
				field = "label"
			}
			return nil, &messages.FieldError{Field: field, Reason: fmt.Sprintf("column %q holds NaN or infinite values", c.col.name)}
		}
		if c.label {
			if s.Nulls > 0 {
				return nil, &messages.FieldError{Field: "label", Reason: fmt.Sprintf("%d rows have a NULL label %q", s.Nulls, c.col.name)}
			}
			p.Label = cp
			continue
		}
		if !c.cat {
			if err := numericTransform(in.spec.Features[i], c.field, &cp); err != nil {
				return nil, err
			}
		}
		p.Features = append(p.Features, cp)
	}
	return avgText, nil
}
