package coordinator

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/messages"
)

// Planning limits.
const (
	defaultVocabSize = 100
	maxLabelClasses  = 1000
	maxPageRows      = 16384
	// Per-column bytes a raw page spends besides the values: name, kind, null bitmap and
	// msgpack framing, amortised per row generously.
	rawColumnOverhead = 2
	// Per-row bytes of a text value besides its bytes: its uint32 end offset.
	textOffsetBytes = 4
	// Bytes per message for the header and subject when estimating READY's size.
	messageOverhead = 512
)

// planInput is a spec resolved against the catalog: the relation and the key, feature and
// label columns in spec order.
type planInput struct {
	spec messages.JobSpec
	rel  *relation
	key  column // the first (for an integer key the only) key column
	// keyCols is the typed key (any key but one integer column); nil for an integer key.
	keyCols []messages.KeyColumn
	// where is the spec's filters and whereSQL their condition on the planning settings.
	where    []messages.PlannedFilter
	whereSQL string
	features []column
	label    column
	// after, when set (since "last"), limits the job to the keys after it; afterText is a
	// typed key's (its text per column, bound to the afterSetting settings).
	after     *int64
	afterText []string
}

// afterSetting is the setting that holds column i's text of the key since "last" reads
// after: COPY takes no parameters, so the text is bound to set_config and read back.
func afterSetting(i int) string { return fmt.Sprintf("current_setting('pgtrain.after_%d')", i) }

// setAfter binds the text of the key since "last" reads after to this transaction's
// settings (none without since "last" or for an integer key).
func setAfter(ctx context.Context, tx pgx.Tx, text []string) error {
	for i, t := range text {
		if _, err := tx.Exec(ctx, "select set_config($1, $2, true)", fmt.Sprintf("pgtrain.after_%d", i), t); err != nil {
			return fmt.Errorf("setting the key since \"last\" reads after: %w", err)
		}
	}
	return nil
}

// keyFilter is the condition the job's rows meet, in every query planning runs on them: ""
// (every row), or with since "last" the keys after the stored model's last key. It is the
// one place that says what "after a key" means. An integer bound is an int64, never text,
// and is written as a literal because COPY takes no parameters; a typed key's is a row
// comparison in the key's types and collations, as the ranges bound their keys, on the
// text bound to settings (setAfter).
func (in *planInput) keyFilter() string {
	if in.afterText != nil {
		texts := make([]string, len(in.afterText))
		for i := range texts {
			texts[i] = afterSetting(i)
		}
		return messages.KeysAfterTextSQL(in.keyCols, texts)
	}
	if in.after == nil {
		return ""
	}
	return pgx.Identifier{in.key.name}.Sanitize() + " > " + strconv.FormatInt(*in.after, 10) + "::int8"
}

// firstKey is the lower bound of the first key range: the smallest int64, or the key after
// in.after.
func (in *planInput) firstKey() int64 {
	if in.after == nil {
		return math.MinInt64
	}
	return *in.after + 1
}

// conditions is what the job's rows meet in every query planning runs on them: the spec's
// filters and the key filter, joined with and; "" when every row is the job's.
func (in *planInput) conditions() string {
	var all []string
	for _, c := range []string{in.whereSQL, in.keyFilter()} {
		if c != "" {
			all = append(all, "("+c+")")
		}
	}
	return strings.Join(all, " and ")
}

// planSpec derives the plan of a job inside pc.tx, a REPEATABLE READ transaction, and
// helper transactions that join its snapshot, so that the statistics, the ranges and the
// expected checksums all describe one version of the table. from is the stored model a
// job with init_from starts from (nil for the others); a job with since "last" on a table
// with no key after the stored model's last one gets a plan without ranges (nothingNew).
func planSpec(ctx context.Context, pc planConns, spec messages.JobSpec, jobID string, allowed schemaCheck, sz sizing, from *messages.ModelMeta) (*messages.Plan, error) {
	tx := pc.tx
	in, err := resolveSpec(ctx, tx, spec, allowed)
	if err != nil {
		return nil, err
	}
	pc.timer.done("schema", time.Time{})
	p := &messages.Plan{
		Version: messages.SchemaVersion,
		JobID:   jobID,
		Spec:    spec,
		Schema:  in.rel.schema,
		Table:   in.rel.name,
		Key:     in.key.name,
		// A typed key's columns; nil for one integer column.
		KeyColumns: in.keyCols,
		Where:      in.where,
	}
	if err := setWhere(ctx, tx, in.where); err != nil {
		return nil, err
	}
	pc.where = in.where
	if from != nil {
		if done, err := startFrom(ctx, tx, in, p, from); done || err != nil {
			return p, err
		}
		pc.after = in.afterText
	}
	var avgText map[string]float64
	var bounds []messages.KeyRange
	var sums []messages.KeyChecksum
	if from != nil && spec.Preprocessing == messages.PreprocessingReuse {
		avgText, bounds, sums, err = reuseTransforms(ctx, pc, in, p, from)
	} else {
		avgText, bounds, sums, err = computeStats(ctx, pc, in, p, sz.vocabLimit)
		if err == nil {
			err = labelClasses(ctx, tx, in, p)
			pc.timer.done("label_classes", time.Time{})
		}
	}
	if err != nil {
		return nil, err
	}
	if err := checkVocabValues(p, sz.vocabValueBytes); err != nil {
		return nil, err
	}
	for _, f := range p.Features {
		p.InputDim += f.Width()
	}
	switch spec.Label.Encode {
	case messages.EncodeOneHot:
		p.LabelDim = len(p.Label.Vocabulary)
	default:
		p.LabelDim = 1
	}
	assignRanges(in, p, bounds, sums)
	if from != nil {
		if err := checkStartPlan(p, from); err != nil {
			return nil, err
		}
	}
	if err := classWeights(ctx, tx, in, p); err != nil {
		return nil, err
	}
	pc.timer.done("class_weights", time.Time{})
	if err := sampleWeight(ctx, tx, in, p); err != nil {
		return nil, err
	}
	pc.timer.done("sample_weight", time.Time{})
	sizePages(in, p, avgText, sz)
	if err := capWindow(p, sz.readyMaxBytes); err != nil {
		return nil, err
	}
	return p, nil
}

// resolveSpec checks every name of the spec against the catalog.
func resolveSpec(ctx context.Context, tx pgx.Tx, spec messages.JobSpec, allowed schemaCheck) (*planInput, error) {
	rel, err := resolveRelation(ctx, tx, spec.Table, allowed)
	if err != nil {
		return nil, err
	}
	in := &planInput{spec: spec, rel: rel}
	lookup := func(field, name string) (column, error) {
		col, ok := rel.cols[name]
		if !ok {
			return column{}, &messages.FieldError{Field: field, Reason: fmt.Sprintf("no column %q in %s.%s", name, rel.schema, rel.name)}
		}
		return col, nil
	}
	keys, typed, err := resolveKey(ctx, tx, rel, spec.Key)
	if err != nil {
		return nil, err
	}
	in.key, in.keyCols = keys[0], typed
	if in.where, err = resolveWhere(rel, spec.Where); err != nil {
		return nil, err
	}
	if in.whereSQL, err = messages.WhereSQL(in.where, whereSetting); err != nil {
		return nil, &messages.FieldError{Field: "where", Reason: err.Error()}
	}
	for i, f := range spec.Features {
		field := fmt.Sprintf("features[%d]", i)
		col, err := lookup(field+".column", f.Column)
		if err != nil {
			return nil, err
		}
		if slices.Contains(spec.Key, col.name) {
			return nil, &messages.FieldError{Field: field + ".column", Reason: fmt.Sprintf("column %q is the key", col.name)}
		}
		typ, ok := col.valueType()
		switch {
		case f.Encode == messages.EncodeCyclical && typ != messages.TypeDate && typ != messages.TypeTimestamp && typ != messages.TypeTimestampTZ:
			return nil, &messages.FieldError{Field: field + ".encode", Reason: fmt.Sprintf("column %q is %s: encode \"cyclical\" takes a date, timestamp or timestamptz column", col.name, col.pgType)}
		case f.Encode != messages.EncodeNone:
		case !ok && col.textual():
			return nil, &messages.FieldError{Field: field + ".encode", Reason: fmt.Sprintf("column %q is %s, not numeric: use encode \"onehot\", or \"hash\" for many distinct values", col.name, col.pgType)}
		case !ok:
			return nil, &messages.FieldError{Field: field + ".column", Reason: fmt.Sprintf("column %q is %s, which pgtrain does not read as numbers (it reads numbers, boolean, date, timestamp, timestamptz, real[] and float8[]): select it as one of those in a view", col.name, col.pgType)}
		}
		in.features = append(in.features, col)
	}
	if in.label, err = lookup("label", spec.Label.Column); err != nil {
		return nil, err
	}
	if spec.Label.Encode == messages.EncodeNone && !in.label.numeric() {
		return nil, &messages.FieldError{Field: "label", Reason: fmt.Sprintf("column %q is %s, not numeric: use encode \"onehot\" or \"index\"", in.label.name, in.label.pgType)}
	}
	return in, nil
}

// numericTransform fills the imputation and the scaling of a numeric feature (or of one
// element of an array feature), and checks its NaN and infinite values (nan of them NaN)
// against its nonfinite option: under null every one becomes NULL, under clip the NaNs.
func numericTransform(f messages.FeatureSpec, field string, cp *messages.ColumnPlan, nan int64) error {
	s := cp.Stats
	nulls := s.Nulls
	switch f.NonFiniteMode() {
	case messages.NonFiniteError:
		if s.NonFinite > 0 {
			return &messages.FieldError{Field: field + ".column", Reason: fmt.Sprintf("column %q holds %d NaN or infinite values: choose nonfinite \"null\" or \"clip\"", cp.Name, s.NonFinite)}
		}
	case messages.NonFiniteNull:
		nulls += s.NonFinite
	case messages.NonFiniteClip:
		nulls += nan
		if s.NonFinite > nan && s.Count == 0 {
			return &messages.FieldError{Field: field + ".nonfinite", Reason: fmt.Sprintf("column %q has no finite values to clip its infinite ones to", cp.Name)}
		}
	}
	if s.Count == 0 && (f.Impute == messages.ImputeMean || f.Impute == messages.ImputeMedian || f.Scale != messages.ScaleNone) {
		return &messages.FieldError{Field: field + ".column", Reason: fmt.Sprintf("column %q has no non-NULL values to compute statistics from", cp.Name)}
	}
	switch f.Impute {
	case messages.ImputeMean:
		cp.HasImpute, cp.Impute = true, s.Mean
	case messages.ImputeMedian:
		cp.HasImpute, cp.Impute = true, s.Median
	case messages.ImputeConstant:
		cp.HasImpute, cp.Impute = true, *f.ImputeValue
	default:
		if nulls > 0 {
			what := "NULLs"
			if nulls > s.Nulls {
				what = "NULLs (with the NaN or infinite values nonfinite makes NULL)"
			}
			return &messages.FieldError{Field: field + ".impute", Reason: fmt.Sprintf("column %q has %d %s: choose impute mean, median or constant", cp.Name, nulls, what)}
		}
	}
	cp.Offset, cp.Factor = 0, 1
	switch f.Scale {
	case messages.ScaleStandard:
		cp.Offset = s.Mean
		if s.StdDev > 0 {
			cp.Factor = 1 / s.StdDev
		}
	case messages.ScaleMinMax:
		cp.Offset = s.Min
		if s.Max > s.Min {
			cp.Factor = 1 / (s.Max - s.Min)
		}
	}
	return nil
}

// labelClasses fills the class list of a categorical label (one-hot vocabularies come
// with the statistics).
func labelClasses(ctx context.Context, tx pgx.Tx, in *planInput, p *messages.Plan) error {
	if in.spec.Label.Encode == messages.EncodeNone {
		return nil
	}
	limit := maxLabelClasses
	if in.spec.Label.VocabSize > 0 {
		limit = min(limit, in.spec.Label.VocabSize)
	}
	q := pgx.Identifier{in.label.name}.Sanitize()
	order := "k" // numbers in numeric order
	if !in.label.numeric() {
		order = `v collate "C"`
	}
	sql := fmt.Sprintf(`select v from (select %s as k, %s::text as v from %s where %s is not null group by %s) s order by %s limit $1`,
		q, q, in.source(), q, q, order)
	classes, err := queryStrings(ctx, tx, sql, limit+1)
	if err != nil {
		return fmt.Errorf("listing the classes of %q: %w", in.label.name, err)
	}
	if len(classes) > limit {
		return &messages.FieldError{Field: "label", Reason: fmt.Sprintf("column %q has more than %d distinct values", in.label.name, limit)}
	}
	p.Label.Vocabulary = classes
	return nil
}

func queryStrings(ctx context.Context, tx pgx.Tx, sql string, args ...any) ([]string, error) {
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	if out == nil {
		out = []string{}
	}
	return out, nil
}

// minValidationGranularity is the fewest ranges a plan with a validation split has.
const minValidationGranularity = 20

// assignRanges sets the ranges with their row counts, the validation share and the
// expected checksums.
func assignRanges(in *planInput, p *messages.Plan, bounds []messages.KeyRange, sums []messages.KeyChecksum) {
	for i := range bounds {
		bounds[i].Rows = sums[i].Rows
	}
	p.Ranges = bounds
	if vs := in.spec.ValidationSplit; vs > 0 && len(bounds) > 1 {
		v := int(math.Ceil(vs * float64(len(bounds))))
		p.ValidationRanges = min(v, len(bounds)-1)
	}
	train := p.TrainingRanges()
	for i, s := range sums {
		if i < train {
			p.Expected.Merge(s)
		} else {
			p.ExpectedValid.Merge(s)
		}
	}
}

// rangeBounds turns ascending split keys into closed ranges covering all of int64: each
// split is the last key of its range. Equal splits (many rows on one key) collapse.
func rangeBounds(splits []int64) []messages.KeyRange {
	out := []messages.KeyRange{{Lo: math.MinInt64}}
	for _, s := range splits {
		last := &out[len(out)-1]
		if s < last.Lo || s == math.MaxInt64 {
			continue // a duplicate (or out of order) split, or nothing can follow it
		}
		last.Hi = s
		out = append(out, messages.KeyRange{Index: len(out), Lo: s + 1})
	}
	out[len(out)-1].Hi = math.MaxInt64
	return out
}

// sizing is what page sizing and the replay decision depend on besides the table.
type sizing struct {
	maxPayload    int
	readyMaxBytes int64
	window        int
	// vocabLimit is the most distinct values a one-hot column's counts keep in memory.
	vocabLimit int
	// vocabValueBytes bounds each value of a vocabulary (or class list) in the plan.
	vocabValueBytes int
}

// checkVocabValues refuses a vocabulary value longer than the limit: the plan carries every
// vocabulary to every worker in one message, and such values are identifiers, not
// categories, which encode "hash" takes without a vocabulary.
func checkVocabValues(p *messages.Plan, limit int) error {
	if limit <= 0 {
		return nil
	}
	for i, cp := range append(slices.Clone(p.Features), p.Label) {
		for _, v := range cp.Vocabulary {
			if len(v) <= limit {
				continue
			}
			field, hint := fmt.Sprintf("features[%d].column", i), `: use encode "hash" with buckets for such values`
			if i == len(p.Features) {
				field, hint = "label", ""
			}
			return &messages.FieldError{Field: field, Reason: fmt.Sprintf("column %q has a value of %d bytes among its most frequent, over this coordinator's limit of %d bytes per vocabulary value (--max-vocab-value-bytes)%s",
				cp.Name, len(v), limit, hint)}
		}
	}
	return nil
}

// sizePages picks rows per page so both the raw page and the ready batch stay under 3/4 of
// the bus's max payload, decides replay and copies the window.
func sizePages(in *planInput, p *messages.Plan, avgText map[string]float64, sz sizing) {
	raw := 8.0 // key
	// A typed key also travels as its text on RAW (a prediction's pages skip READY).
	var keyText float64
	for _, k := range p.KeyColumns {
		keyText += avgText[k.Name] + textOffsetBytes + rawColumnOverhead
	}
	raw += keyText
	for _, cp := range append(slices.Clone(p.Features), p.Label) {
		n := float64(max(len(cp.Elements), 1)) // an array travels as a column per element
		raw += rawColumnOverhead * n
		switch cp.RawKind() {
		case messages.ColumnText:
			raw += avgText[cp.Name] + textOffsetBytes
		case messages.ColumnFloat32:
			raw += 4 * n
		default:
			raw += 8 * n
		}
	}
	ready := float64(messages.ReadyRowBytes(p.InputDim, p.LabelDim+p.WeightDim()))
	budget := float64(sz.maxPayload) * 3 / 4
	rows := int(budget / max(raw, ready))
	p.PageRows = min(max(rows, 1), maxPageRows)
	if in.spec.PageRows > 0 {
		p.PageRows = in.spec.PageRows
	}
	total := p.Expected.Rows + p.ExpectedValid.Rows
	pages := (total+int64(p.PageRows)-1)/int64(p.PageRows) + int64(len(p.Ranges))
	estimate := float64(total)*ready + float64(pages)*messageOverhead
	p.Replay = estimate <= float64(sz.readyMaxBytes)/2
	p.Window = sz.window
}

// readyRangeBytes estimates what the largest range of the plan takes in READY.
func readyRangeBytes(p *messages.Plan) float64 {
	var rows int64
	for _, r := range p.Ranges {
		rows = max(rows, r.Rows)
	}
	pages := rows/int64(max(p.PageRows, 1)) + 1
	return float64(rows)*float64(messages.ReadyRowBytes(p.InputDim, p.LabelDim+p.WeightDim())) + float64(pages)*messageOverhead
}

// capWindow keeps the ranges fetchers may read ahead of the trainer inside READY when later
// epochs re-read PostgreSQL. The trainer reads the ranges in order and frees a range's
// batches only after training on it: were READY full of batches of ranges ahead, the range
// it waits for could not get in and nothing would make room, and the job would stall. So
// the window holds at most what fits in 3/4 of READY (the rest absorbs estimation error),
// and a job whose largest range alone does not fit is refused. (With replay the whole table
// fits in half of READY.) Jobs running at the same time share READY: their windows together
// should fit, which the READY limit's default leaves ample room for.
func capWindow(p *messages.Plan, readyMaxBytes int64) error {
	if p.Replay || readyMaxBytes <= 0 {
		return nil
	}
	per := readyRangeBytes(p)
	fit := int(float64(readyMaxBytes) * 3 / 4 / per)
	if fit < 1 {
		return &messages.FieldError{Field: "range_rows", Reason: fmt.Sprintf(
			"a key range takes about %.0f bytes in READY, more than 3/4 of its %d-byte limit: lower range_rows or raise the READY limit",
			per, readyMaxBytes)}
	}
	p.Window = min(p.Window, fit)
	return nil
}

// beginPlan opens the transaction planning runs in, on a pooled connection. For a snapshot
// job the connection stays with the snapshot after planning (until snapshot.close), and the
// server ends the transaction itself if it idles for maxAge (a hung coordinator must not
// hold a session for ever).
func beginPlan(ctx context.Context, pool *pgxpool.Pool, snapshotted bool, maxAge time.Duration) (pgx.Tx, *snapshot, error) {
	opts := pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
	if !snapshotted {
		tx, err := pool.BeginTx(ctx, opts)
		if err != nil {
			return nil, nil, fmt.Errorf("starting the planning transaction: %w", err)
		}
		return tx, nil, nil
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("opening the snapshot connection: %w", err)
	}
	tx, err := conn.BeginTx(ctx, opts)
	if err != nil {
		conn.Release()
		return nil, nil, fmt.Errorf("starting the snapshot transaction: %w", err)
	}
	s := &snapshot{conn: conn, tx: tx}
	// The transaction idles while the first pass runs: the server's own idle timeout (if
	// any) gives way to the snapshot's max age, for this transaction only.
	_, err = tx.Exec(ctx, "select set_config('idle_in_transaction_session_timeout', $1, true)", strconv.FormatInt(maxAge.Milliseconds(), 10))
	if err == nil {
		err = tx.QueryRow(ctx, "select pg_export_snapshot()").Scan(&s.id)
	}
	if err != nil {
		_ = s.close(context.WithoutCancel(ctx))
		return nil, nil, fmt.Errorf("exporting the snapshot: %w", err)
	}
	return tx, s, nil
}
