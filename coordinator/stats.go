package coordinator

import (
	"cmp"
	"context"
	"errors"
	"fmt"
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
	typ    string // how a numeric column is read (messages.Type*)
	elems  int    // an array column's length, set by arrayLengths
}

// colStats is what planning learns about one column (or, in elems, about each element of
// an array column).
type colStats struct {
	stats   messages.Stats
	avgText float64
	nan     int64
	elems   []colStats
}

func statColumns(in *planInput) []statColumn {
	cols := make([]statColumn, 0, len(in.features)+1)
	for i, col := range in.features {
		f := in.spec.Features[i]
		c := statColumn{col: col, field: fmt.Sprintf("features[%d]", i),
			cat: f.Encode == messages.EncodeOneHot || f.Encode == messages.EncodeHash, median: f.Impute == messages.ImputeMedian}
		if f.Encode == messages.EncodeOneHot {
			c.vocab = cmp.Or(f.VocabSize, defaultVocabSize)
		}
		if !c.cat {
			c.typ, _ = col.valueType()
		}
		cols = append(cols, c)
	}
	return append(cols, statColumn{col: in.label, field: "label", label: true, cat: in.spec.Label.Encode != messages.EncodeNone})
}

func (c statColumn) isArray() bool {
	return c.typ == messages.TypeFloat4Array || c.typ == messages.TypeFloat8Array
}

// baseType is the type a numeric column is selected as, so that a domain arrives as its
// base type (a no-op for the base type itself).
func (c statColumn) baseType() string {
	switch c.typ {
	case messages.TypeBoolean:
		return "bool"
	case messages.TypeDate, messages.TypeTimestamp, messages.TypeTimestampTZ:
		return c.typ
	case messages.TypeFloat4Array:
		return "float4[]"
	case messages.TypeFloat8Array:
		return "float8[]"
	}
	return "float8"
}

// floatSQL is the column (or element j of an array column) as float8 in SQL: the number
// the statistics pass and the fetchers decode it to.
func (c statColumn) floatSQL(j int) string {
	q := pgx.Identifier{c.col.name}.Sanitize()
	switch c.typ {
	case messages.TypeBoolean:
		return q + "::int4::float8"
	case messages.TypeDate, messages.TypeTimestamp, messages.TypeTimestampTZ:
		return fmt.Sprintf("extract(epoch from %s::%s)::float8", q, c.typ)
	case messages.TypeFloat4Array, messages.TypeFloat8Array:
		return fmt.Sprintf("(%s::%s)[array_lower(%s, 1) + %d]::float8", q, c.baseType(), q, j)
	}
	return q + "::float8"
}

// arrayLengths sets the length of each array column: that of any of its non-NULL values
// (the statistics pass then checks every row against it). A column with none is refused.
func arrayLengths(ctx context.Context, tx pgx.Tx, in *planInput, cols []statColumn) error {
	for i := range cols {
		c := &cols[i]
		if !c.isArray() {
			continue
		}
		q := pgx.Identifier{c.col.name}.Sanitize()
		err := tx.QueryRow(ctx, fmt.Sprintf("select coalesce(cardinality(%s), 0) from %s where %s is not null limit 1", q, in.source(), q)).Scan(&c.elems)
		if errors.Is(err, pgx.ErrNoRows) {
			return &messages.FieldError{Field: c.field + ".column", Reason: fmt.Sprintf("array column %q has no non-NULL value to take its length from", c.col.name)}
		}
		if err != nil {
			return fmt.Errorf("reading the length of array column %q: %w", c.col.name, err)
		}
		if c.elems == 0 {
			return &messages.FieldError{Field: c.field + ".column", Reason: fmt.Sprintf("array column %q holds an empty array; fixed-length arrays of at least one element only", c.col.name)}
		}
	}
	return nil
}

// wrongLength is the 400 of an array column with a value of another length than the
// others: it names the first such row by key.
func wrongLength(ctx context.Context, tx pgx.Tx, in *planInput, c statColumn) error {
	q := pgx.Identifier{c.col.name}.Sanitize()
	k := pgx.Identifier{in.key.name}.Sanitize()
	var key string
	var n int
	err := tx.QueryRow(ctx, fmt.Sprintf(`select %s::text, coalesce(cardinality(%s), 0) from %s
where %s is not null and (coalesce(cardinality(%s), 0) <> $1 or array_ndims(%s) <> 1) order by %s limit 1`, k, q, in.source(), q, q, q, k), c.elems).Scan(&key, &n)
	if err != nil {
		return fmt.Errorf("finding the row of array column %q with another length: %w", c.col.name, err)
	}
	return &messages.FieldError{Field: c.field + ".column", Reason: fmt.Sprintf("array column %q must hold arrays of one length: row key %s has %d elements (or more than one dimension), others have %d",
		c.col.name, key, n, c.elems)}
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
	// after is the key text since "last" reads after, which each helper binds likewise.
	after []string
	// timer notes when each pass ends (nil: not noted).
	timer *planTimer
}

// computeStats fills the column plans of the features and the label, splits the key space
// and counts the rows and key checksums of each range. The statistics of every planned
// column come from binary COPYs of disjoint parts of the table (statsPart), read at the
// same time on the connections planning has and merged exactly. An integer key is read in
// the same COPYs and counted into buckets over its least and greatest values, from which
// the ranges are cut (splitHistogram); a typed key has its own key pass (splitTypedKeys)
// beside them. Only medians, label classes and a vocabulary too large to count in memory
// are left to SQL. It returns the average text width per categorical column (by name) for
// page sizing, the ranges and their checksums.
func computeStats(ctx context.Context, pc planConns, in *planInput, p *messages.Plan, vocabLimit int) (map[string]float64, []messages.KeyRange, []messages.KeyChecksum, error) {
	cols := statColumns(in)
	if err := arrayLengths(ctx, pc.tx, in, cols); err != nil {
		return nil, nil, nil, err
	}
	var (
		split *keySplit
		extra []func(context.Context, pgx.Tx) error
		span  *keySpan
	)
	if in.keyCols == nil {
		s, err := readKeySpan(ctx, pc.tx, in)
		if err != nil {
			return nil, nil, nil, err
		}
		span = &s
		pc.timer.done("key_span", time.Time{})
	} else {
		extra = append(extra, func(ctx context.Context, tx pgx.Tx) (err error) {
			began := time.Now()
			split, err = splitTypedKeys(ctx, tx, in)
			pc.timer.done("key_split", began)
			return err
		})
	}
	total, err := pc.scanParts(ctx, in, cols, vocabLimit, span, extra)
	if err != nil {
		return nil, nil, nil, err
	}
	if span != nil {
		began := time.Now()
		if split, err = splitHistogram(ctx, pc.tx, in, total.keys, total.rows); err != nil {
			return nil, nil, nil, err
		}
		pc.timer.done("key_cut", began)
	} else if total.rows != split.rows {
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
		if c.isArray() {
			if total.badLen[i] {
				return nil, nil, nil, wrongLength(ctx, pc.tx, in, c)
			}
			s.elems = make([]colStats, c.elems)
			for j, m := range total.elems[i] {
				s.elems[j].fromMoments(m)
			}
			continue
		}
		s.fromMoments(total.moments[i])
	}
	if err := medians(ctx, pc.tx, in, cols, out); err != nil {
		return nil, nil, nil, err
	}
	pc.timer.done("medians", time.Time{})
	avgText, err := columnPlans(in, p, cols, out, split.rows)
	if err != nil {
		return nil, nil, nil, err
	}
	split.addKeyWidths(avgText)
	p.LastKeyText = split.last
	for i, c := range cols {
		if c.vocab > 0 {
			if p.Features[i].Vocabulary, err = vocabulary(ctx, pc.tx, in, c, total.text[i]); err != nil {
				return nil, nil, nil, err
			}
		}
	}
	pc.timer.done("vocabularies", time.Time{})
	return avgText, split.bounds, split.sums, nil
}

// scanParts reads cols, and an integer key into buckets over span (nil: no key), in
// disjoint parts of the table (tableParts) on the planning connections, extra tasks beside
// them, and merges the parts as each ends: the sums are exact, so neither the cut nor the
// order of the parts changes the result.
func (pc planConns) scanParts(ctx context.Context, in *planInput, cols []statColumn, vocabLimit int, span *keySpan, extra []func(context.Context, pgx.Tx) error) (*statsPart, error) {
	parts, err := tableParts(ctx, pc, in)
	if err != nil {
		return nil, err
	}
	pc.timer.done("parts", time.Time{})
	var (
		// total is every part read so far, so only the parts being read are held besides it.
		total   *statsPart
		totalMu sync.Mutex
	)
	tasks := extra
	for i, where := range parts {
		tasks = append(tasks, func(ctx context.Context, tx pgx.Tx) (err error) {
			began := time.Now()
			part, err := scanStats(ctx, tx, in, cols, where, vocabLimit, span)
			if err != nil {
				return err
			}
			totalMu.Lock()
			if total == nil {
				total = part
			} else {
				total.merge(part)
			}
			totalMu.Unlock()
			pc.timer.done(fmt.Sprintf("stats_part%d", i), began)
			return nil
		})
	}
	if err := pc.run(ctx, tasks); err != nil {
		return nil, err
	}
	pc.timer.done("passes", time.Time{})
	return total, nil
}

func (s *colStats) fromMoments(m *moments) {
	s.stats.Count = m.count
	s.stats.Mean, s.stats.StdDev = m.meanStdDev()
	s.stats.Min, s.stats.Max = m.min, m.max
	s.stats.NonFinite, s.nan = m.nonFinite, m.nan
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
				if err := setAfter(ctx, tx, pc.after); err != nil {
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

// partsPerConn is how many block ranges the statistics are cut into per planning
// connection. A typed key's split runs beside them and takes about as long as one
// connection's share: with one part per connection, the connection that ran the split read
// its part after it while the others idled (a 2M-row timeline: split 3.4 s, parts 3.7 and
// 4.4 s, the last part alone until 6.4 s), and connections sharing the cores read at
// different speeds. Smaller parts taken from one queue let every connection end at about
// the same time; the partial sums merge exactly, so the statistics do not depend on the cut.
const partsPerConn = 4

// tableParts are the WHERE clauses of the statistics passes: disjoint block ranges (TID
// range scans) of a table, so each part reads its own share of the heap, or the whole
// relation in one pass when it has no ctid (views) or is small.
func tableParts(ctx context.Context, pc planConns, in *planInput) ([]string, error) {
	conns := pc.helpers + 1
	n := conns * partsPerConn
	// With filters (a subquery, which has no ctid) or a key filter: one read, through
	// the indexes where they help, not the whole heap in parts.
	if pc.pool == nil || conns < 2 || (in.rel.kind != "r" && in.rel.kind != "m") || in.conditions() != "" {
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

// medians runs one aggregate query for the median of each numeric feature imputed by it
// (of each element of an array), over its finite values.
func medians(ctx context.Context, tx pgx.Tx, in *planInput, cols []statColumn, out []colStats) error {
	var items []string
	var targets []any
	add := func(c statColumn, j int, into *messages.Stats) {
		x := c.floatSQL(j)
		items = append(items, fmt.Sprintf("coalesce(percentile_cont(0.5) within group (order by %s) filter (where %s not in ('NaN', 'Infinity', '-Infinity')), 0)", x, x))
		targets = append(targets, &into.Median)
	}
	for i, c := range cols {
		if !c.median || c.cat {
			continue
		}
		if c.isArray() {
			for j := range out[i].elems {
				add(c, j, &out[i].elems[j].stats)
			}
			continue
		}
		add(c, 0, &out[i].stats)
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
		s.Nulls = rows - s.Count - s.NonFinite
		cp := messages.ColumnPlan{Name: c.col.name, PGType: c.col.pgType, Kind: messages.KindNumeric, Factor: 1, Type: c.typ}
		if c.label {
			cp.Stats = s
			if c.cat {
				cp.Kind = messages.KindCategorical
				avgText[c.col.name] = out[i].avgText
			} else if s.NonFinite > 0 {
				return nil, &messages.FieldError{Field: "label", Reason: fmt.Sprintf("column %q holds %d NaN or infinite values", c.col.name, s.NonFinite)}
			}
			if s.Nulls > 0 {
				return nil, &messages.FieldError{Field: "label", Reason: fmt.Sprintf("%d rows have a NULL label %q", s.Nulls, c.col.name)}
			}
			p.Label = cp
			continue
		}
		f := in.spec.Features[i]
		if c.cat {
			cp.Kind, cp.Stats, cp.Type = messages.KindCategorical, s, messages.TypeNumber
			if f.Encode == messages.EncodeHash {
				cp.Encode, cp.Buckets = messages.EncodeHash, f.Buckets
			}
			avgText[c.col.name] = out[i].avgText
			p.Features = append(p.Features, cp)
			continue
		}
		cp.Encode, cp.NonFinite = f.Encode, f.NonFiniteMode()
		if !c.isArray() {
			cp.Stats = s
			if err := numericTransform(f, c.field, &cp, out[i].nan); err != nil {
				return nil, err
			}
			p.Features = append(p.Features, cp)
			continue
		}
		cp.Elements = make([]messages.ElementPlan, len(out[i].elems))
		for j, e := range out[i].elems {
			ep := messages.ColumnPlan{Name: messages.RawName(c.col.name, j), Stats: e.stats}
			ep.Stats.Nulls = rows - e.stats.Count - e.stats.NonFinite
			if err := numericTransform(f, c.field, &ep, e.nan); err != nil {
				return nil, err
			}
			cp.Elements[j] = messages.ElementPlan{HasImpute: ep.HasImpute, Impute: ep.Impute, Offset: ep.Offset, Factor: ep.Factor, Stats: ep.Stats}
		}
		p.Features = append(p.Features, cp)
	}
	return avgText, nil
}
