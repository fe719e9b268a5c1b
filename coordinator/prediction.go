package coordinator

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"pgtrain/internal/bus"
	"pgtrain/messages"
	"pgtrain/model"
)

// modelFiles reads the files of finished models; *bus.Bus implements it.
type modelFiles interface {
	ModelFile(ctx context.Context, jobID, name string) ([]byte, error)
}

// modelMeta reads a finished model's metadata from the model store: an unknown model, or
// one this build cannot read, is a 400 on field (the spec field that names the model).
func (c *Coordinator) modelMeta(ctx context.Context, field, id string) (messages.ModelMeta, error) {
	store, ok := c.bus.(modelFiles)
	if !ok {
		return messages.ModelMeta{}, &apiError{status: http.StatusServiceUnavailable, msg: "this coordinator has no model store"}
	}
	js, err := store.ModelFile(ctx, id, bus.ModelJSON)
	if errors.Is(err, bus.ErrNoModel) {
		return messages.ModelMeta{}, &messages.FieldError{Field: field, Reason: fmt.Sprintf("no finished model %q (a training job's id; see pgtrain models)", id)}
	}
	if err != nil {
		return messages.ModelMeta{}, unavailable(err)
	}
	meta, err := model.ReadMeta(js)
	if err != nil {
		return messages.ModelMeta{}, &messages.FieldError{Field: field, Reason: fmt.Sprintf("model %s: %v", id, err)}
	}
	return meta, nil
}

// createPrediction checks a prediction spec against the model and the database, plans the
// key ranges of the scored table (no statistics: the model's preprocessing is used as it
// is), creates the output table and starts the job. Every check runs before anything is
// written.
func (c *Coordinator) createPrediction(ctx context.Context, body []byte) (messages.JobStatus, error) {
	began := time.Now()
	spec, err := messages.ParsePredictionSpec(body)
	if err != nil {
		return messages.JobStatus{}, err
	}
	if l := c.cfg.Limits.PageRows; l > 0 && spec.PageRows > l {
		return messages.JobStatus{}, &messages.FieldError{Field: "page_rows", Reason: fmt.Sprintf("%d is over this coordinator's limit of %d", spec.PageRows, l)}
	}
	if err := messages.CheckWhere(spec.Where, c.cfg.Limits.Filters, c.cfg.Limits.InValues); err != nil {
		return messages.JobStatus{}, err
	}
	pool := c.sources[spec.Source]
	if pool == nil {
		return messages.JobStatus{}, &messages.FieldError{Field: "source", Reason: fmt.Sprintf("unknown source %q", spec.Source)}
	}
	// Planning outlives an impatient client, as for training jobs.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.PlanTimeout)
	defer cancel()
	tm, err := c.modelMeta(ctx, "model", spec.Model)
	if err != nil {
		return messages.JobStatus{}, err
	}
	release, err := c.reserveSource(spec.Source)
	if err != nil {
		return messages.JobStatus{}, err
	}
	defer release()
	tx, _, err := beginPlan(ctx, pool, false, 0)
	if err != nil {
		return messages.JobStatus{}, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	allowed := func(field string) schemaCheck {
		return func(schema string) error {
			if c.schemas.allows(spec.Source, schema) {
				return nil
			}
			return &messages.FieldError{Field: field, Reason: fmt.Sprintf("schema %q is not open through this coordinator (source %q allows %s)",
				schema, spec.Source, c.schemas.describe(spec.Source))}
		}
	}
	jobID := newJobID(spec.Table)
	p, in, err := planPrediction(ctx, tx, spec, tm, jobID, allowed("table"))
	if err != nil {
		return messages.JobStatus{}, err
	}
	if err := checkOutput(ctx, tx, spec, in, p, allowed("output")); err != nil {
		return messages.JobStatus{}, err
	}
	pc := planConns{tx: tx, pool: pool, helpers: c.cfg.PlanConns - 1}
	if err := planPredictionRanges(ctx, pc, in, p, sizing{maxPayload: c.maxPayload(), readyMaxBytes: c.cfg.ReadyMaxBytes, window: c.cfg.Window}); err != nil {
		return messages.JobStatus{}, err
	}
	if err := checkPlanSize(p, c.maxPayload()); err != nil {
		return messages.JobStatus{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return messages.JobStatus{}, fmt.Errorf("ending the planning transaction: %w", err)
	}
	if p.Prediction.OutputTable != "" {
		if err := createOutput(ctx, pool, p, in.rel); err != nil {
			return messages.JobStatus{}, err
		}
	}
	status, err := c.storeJob(ctx, p, spec.Table, nil, spec.Source)
	if err != nil {
		return messages.JobStatus{}, err
	}
	c.log.Info("prediction job planned", "job_id", p.JobID, "model", spec.Model, "table", p.Schema+"."+p.Table,
		"output", outputName(p.Prediction), "mode", spec.Mode, "rows", p.Expected.Rows,
		"ranges", len(p.Ranges), "page_rows", p.PageRows, "evaluate", p.Prediction.Evaluate,
		"took", time.Since(began).Round(time.Millisecond))
	return status, nil
}

// planPrediction resolves the scored table against the model: the key, and every input
// column with a type the model's transform can read. The label is planned when the table
// holds it, so that the job evaluates the model.
func planPrediction(ctx context.Context, tx pgx.Tx, spec messages.PredictionSpec, tm messages.ModelMeta, jobID string, allowed schemaCheck) (*messages.Plan, *planInput, error) {
	rel, err := resolveRelation(ctx, tx, spec.Table, allowed)
	if err != nil {
		return nil, nil, err
	}
	// The key is the spec's, else the model's, and is checked as a training job's is.
	keySpec := spec.Key
	if keySpec == nil {
		keySpec = tm.Spec.Key
	}
	if keySpec == nil {
		keySpec = messages.KeyColumns{tm.Key}
	}
	keys, typed, err := resolveKey(ctx, tx, rel, keySpec)
	if err != nil {
		return nil, nil, err
	}
	keyNames := make(messages.KeyColumns, len(keys))
	for i, k := range keys {
		keyNames[i] = k.name
	}
	where, err := resolveWhere(rel, spec.Where)
	if err != nil {
		return nil, nil, err
	}
	whereSQL, err := messages.WhereSQL(where, whereSetting)
	if err != nil {
		return nil, nil, &messages.FieldError{Field: "where", Reason: err.Error()}
	}
	if err := setWhere(ctx, tx, where); err != nil {
		return nil, nil, err
	}
	// The job's spec is the model's, on this table, read once.
	js := tm.Spec
	js.Source, js.Table, js.Key = spec.Source, spec.Table, keyNames
	js.Epochs, js.ValidationSplit, js.Consistency = 1, 0, messages.ConsistencyNone
	js.RangeRows, js.PageRows, js.Where = spec.RangeRows, spec.PageRows, spec.Where
	in := &planInput{spec: js, rel: rel, key: keys[0], keyCols: typed, where: where, whereSQL: whereSQL}
	p := &messages.Plan{
		Version:    messages.SchemaVersion,
		JobID:      jobID,
		Kind:       messages.JobKindPrediction,
		Spec:       js,
		Schema:     rel.schema,
		Table:      rel.name,
		Key:        keys[0].name,
		KeyColumns: typed,
		Where:      where,
		InputDim:   tm.InputDim,
	}
	for _, f := range tm.Features {
		col, ok := rel.cols[f.Name]
		if !ok {
			return nil, nil, &messages.FieldError{Field: "table", Reason: fmt.Sprintf("%s.%s has no column %q, an input of model %s", rel.schema, rel.name, f.Name, spec.Model)}
		}
		if slices.Contains(keyNames, col.name) {
			return nil, nil, &messages.FieldError{Field: "key", Reason: fmt.Sprintf("column %q is the key and an input of model %s", col.name, spec.Model)}
		}
		if typ, ok := col.valueType(); f.Kind == messages.KindNumeric && (!ok || typ != f.Type) {
			want := "a number"
			if f.Type != messages.TypeNumber {
				want = "a " + f.Type
			}
			return nil, nil, &messages.FieldError{Field: "table", Reason: fmt.Sprintf("column %q of %s.%s is %s; model %s reads it as %s", col.name, rel.schema, rel.name, col.pgType, spec.Model, want)}
		}
		// The transform is the model's; only the column's type is this table's, which says
		// how the fetchers read it.
		f.PGType = col.pgType
		p.Features = append(p.Features, f)
		in.features = append(in.features, col)
	}
	pp := &messages.PredictionPlan{Model: spec.Model, Mode: spec.Mode, KeyType: keys[0].pgType, Task: messages.TaskRegression,
		Probabilities: spec.Probabilities, FromLogits: tm.FromLogits}
	if tm.LabelKind == messages.LabelClassification {
		pp.Task, pp.Classes = messages.TaskClassification, slices.Clone(tm.Classes)
	} else if spec.Probabilities {
		return nil, nil, &messages.FieldError{Field: "probabilities", Reason: fmt.Sprintf("model %s is a regression model: it has no class probabilities", spec.Model)}
	}
	col, ok := rel.cols[tm.Label.Name]
	ok = ok && !slices.Contains(keyNames, col.name) && (tm.Label.Kind == messages.KindCategorical || col.numeric())
	if spec.Evaluate != nil && *spec.Evaluate && !ok {
		return nil, nil, &messages.FieldError{Field: "evaluate", Reason: fmt.Sprintf("%s.%s has no column %q of a type the label %q reads, so model %s cannot be evaluated on it",
			rel.schema, rel.name, tm.Label.Name, tm.Label.Name, spec.Model)}
	}
	if ok && (spec.Evaluate == nil || *spec.Evaluate) {
		l := tm.Label
		l.PGType = col.pgType
		p.Label, p.LabelDim, pp.Evaluate = l, tm.LabelDim, true
		in.label = col
	}
	p.Prediction = pp
	return p, in, nil
}

// checkOutput names the output table and checks it against the mode: create wants no
// relation of that name, append a table with the prediction columns (or none), replace
// anything but the scored relation itself. An evaluation has no output table to check.
func checkOutput(ctx context.Context, tx pgx.Tx, spec messages.PredictionSpec, in *planInput, p *messages.Plan, allowed schemaCheck) error {
	if spec.Output == "" {
		return nil
	}
	schema, table, err := messages.SplitOutputName(spec.Output)
	if err != nil {
		return &messages.FieldError{Field: "output", Reason: err.Error()}
	}
	if schema == "" {
		schema = in.rel.schema
	}
	if err := allowed(schema); err != nil {
		return err
	}
	pp := p.Prediction
	pp.OutputSchema, pp.OutputTable = schema, table
	names, _ := pp.OutputColumns()
	for _, k := range outputKey(p) {
		if slices.Contains(names, k.Name) {
			return &messages.FieldError{Field: "key", Reason: fmt.Sprintf("the key column %q has the name of a prediction column (%s)", k.Name, strings.Join(names, ", "))}
		}
	}
	if schema == in.rel.schema && table == in.rel.name {
		return &messages.FieldError{Field: "output", Reason: "the output table is the scored table"}
	}
	var exists bool
	if err := tx.QueryRow(ctx, `select exists (select 1 from pg_catalog.pg_namespace where nspname = $1)`, schema).Scan(&exists); err != nil {
		return fmt.Errorf("looking up the output schema: %w", err)
	}
	if !exists {
		return &messages.FieldError{Field: "output", Reason: fmt.Sprintf("no schema %q", schema)}
	}
	var kind string
	err = tx.QueryRow(ctx, `
select c.relkind::text from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where n.nspname = $1 and c.relname = $2`, schema, table).Scan(&kind)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("looking up the output table: %w", err)
	}
	ident := pgx.Identifier{schema, table}.Sanitize()
	switch spec.Mode {
	case messages.OutputCreate:
		return &apiError{status: http.StatusConflict, field: "output", msg: fmt.Sprintf("%s exists (mode create); use mode append or replace", ident)}
	case messages.OutputReplace:
		if kind != "r" {
			return &messages.FieldError{Field: "output", Reason: fmt.Sprintf("%s is not a table (relkind %s); replace drops only tables", ident, kind)}
		}
		return nil
	}
	return checkAppendTarget(ctx, tx, schema, table, outputKey(p), pp)
}

// outputKey is the output table's key: the source key's columns, with their types.
func outputKey(p *messages.Plan) []messages.KeyColumn {
	if p.KeyColumns != nil {
		return p.KeyColumns
	}
	return []messages.KeyColumn{{Name: p.Key, Type: p.Prediction.KeyType}}
}

// checkAppendTarget checks that an existing output table takes the job's rows: the key's
// columns unique together (the upsert's conflict target) and every prediction column there.
func checkAppendTarget(ctx context.Context, tx pgx.Tx, schema, table string, key []messages.KeyColumn, pp *messages.PredictionPlan) error {
	ident := pgx.Identifier{schema, table}.Sanitize()
	rows, err := tx.Query(ctx, `
select a.attname::text, format_type(a.atttypid, a.atttypmod)
from pg_catalog.pg_attribute a
where a.attrelid = (select c.oid from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                    where n.nspname = $1 and c.relname = $2 and c.relkind = 'r')
  and a.attnum > 0 and not a.attisdropped`, schema, table)
	if err != nil {
		return fmt.Errorf("listing the output table's columns: %w", err)
	}
	type col struct{ Name, Type string }
	cols, err := pgx.CollectRows(rows, pgx.RowToStructByPos[col])
	if err != nil {
		return fmt.Errorf("listing the output table's columns: %w", err)
	}
	if len(cols) == 0 {
		return &messages.FieldError{Field: "output", Reason: fmt.Sprintf("%s is not a table", ident)}
	}
	have := map[string]string{}
	for _, c := range cols {
		have[c.Name] = c.Type
	}
	names, types := pp.OutputColumns()
	var keyNames, keyTypes []string
	for _, k := range key {
		keyNames, keyTypes = append(keyNames, k.Name), append(keyTypes, k.Type)
	}
	names, types = append(keyNames, names...), append(keyTypes, types...)
	for i, n := range names {
		t, ok := have[n]
		if !ok {
			return &messages.FieldError{Field: "output", Reason: fmt.Sprintf("%s has no column %q (mode append needs %s)", ident, n, strings.Join(names, ", "))}
		}
		if t != types[i] {
			return &messages.FieldError{Field: "output", Reason: fmt.Sprintf("column %q of %s is %s, want %s", n, ident, t, types[i])}
		}
	}
	// A unique index on exactly the key's columns, in any order, is the upsert's target.
	var unique bool
	err = tx.QueryRow(ctx, `
select exists (
  select 1 from pg_catalog.pg_index i
  where i.indrelid = $1::regclass and i.indisunique and i.indpred is null and i.indexprs is null
    and i.indnatts = cardinality($2::text[])
    and (select array_agg(a.attname::text order by a.attname::text) from pg_catalog.pg_attribute a
         where a.attrelid = i.indrelid and a.attnum = any(i.indkey::int2[]))
        = (select array_agg(k order by k) from unnest($2::text[]) k))`,
		ident, keyNames).Scan(&unique)
	if err != nil {
		return fmt.Errorf("checking the output table's key: %w", err)
	}
	if !unique {
		what := fmt.Sprintf("column %q", keyNames[0])
		if len(keyNames) > 1 {
			what = "the key (" + strings.Join(keyNames, ", ") + ")"
		}
		return &messages.FieldError{Field: "output", Reason: fmt.Sprintf("%s of %s has no unique index of its own; the idempotent upsert needs one", what, ident)}
	}
	return nil
}

// planPredictionRanges splits the key space and counts each range's rows and key checksum
// as for training (splitKeysInParts), and sizes the pages. No statistics are computed: the
// model's are used; only the text columns' widths are measured, for sizing.
func planPredictionRanges(ctx context.Context, pc planConns, in *planInput, p *messages.Plan, sz sizing) error {
	var texts []string
	for i, col := range in.features {
		if p.Features[i].Kind == messages.KindCategorical {
			texts = append(texts, col.name)
		}
	}
	if p.Prediction.Evaluate && p.Label.Kind == messages.KindCategorical {
		texts = append(texts, in.label.name)
	}
	avgText, err := textWidths(ctx, pc.tx, in, texts)
	if err != nil {
		return err
	}
	split, err := splitKeysInParts(ctx, pc, in)
	if err != nil {
		return err
	}
	split.addKeyWidths(avgText)
	assignRanges(in, p, split.bounds, split.sums)
	sizePages(in, p, avgText, sz)
	return capWindow(p, sz.readyMaxBytes)
}

// textSampleRows bounds the rows textWidths reads: the widths only size pages (a fetcher
// halves a page that comes out over the NATS payload limit anyway), and a full scan of a
// large table was a third of a prediction's planning.
const textSampleRows = 100_000

// textWidths estimates the average width of the named text columns from the job's first
// textSampleRows rows (in the table's physical order), for page sizing.
func textWidths(ctx context.Context, tx pgx.Tx, in *planInput, texts []string) (map[string]float64, error) {
	avgText := map[string]float64{}
	if len(texts) == 0 {
		return avgText, nil
	}
	items := make([]string, len(texts))
	widths := make([]float64, len(texts))
	targets := make([]any, len(texts))
	for i, name := range texts {
		items[i] = fmt.Sprintf("coalesce(avg(octet_length(%s::text)), 0)::float8", pgx.Identifier{name}.Sanitize())
		targets[i] = &widths[i]
	}
	sample := "(select * from " + in.source() + " limit " + strconv.Itoa(textSampleRows) + ") as sample"
	if err := tx.QueryRow(ctx, "select "+strings.Join(items, ", ")+" from "+sample).Scan(targets...); err != nil {
		return nil, fmt.Errorf("measuring the text columns: %w", err)
	}
	for i, name := range texts {
		avgText[name] = widths[i]
	}
	return avgText, nil
}

// createOutput creates (or, in mode replace, drops and creates) the output table: the
// source key's columns, of the same types and collations, then the prediction columns. In
// mode append the key is the primary key from the start; in modes create and replace it
// is added when the job finishes, and the job's ledger is created with the table
// (prediction_finish.go).
func createOutput(ctx context.Context, pool *pgxpool.Pool, p *messages.Plan, rel *relation) error {
	pp := p.Prediction
	ident := pgx.Identifier{pp.OutputSchema, pp.OutputTable}.Sanitize()
	names, types := pp.OutputColumns()
	// The key's types come from format_type (checked by ValidKeyType), never from a client.
	var defs []string
	for _, k := range outputKey(p) {
		if !messages.ValidKeyType(k.Type) {
			return fmt.Errorf("key column %q has type %q, which cannot be spliced", k.Name, k.Type)
		}
		def := pgx.Identifier{k.Name}.Sanitize() + " " + k.Type
		if coll := rel.cols[k.Name].collation; coll != nil {
			def += " collate " + coll.Sanitize()
		}
		defs = append(defs, def)
	}
	for i, n := range names {
		defs = append(defs, pgx.Identifier{n}.Sanitize()+" "+types[i])
	}
	if !outputKeyLater(pp) {
		defs = append(defs, "primary key ("+messages.KeyList(outputKey(p))+")")
	}
	create := "create table " + ident + " (" + strings.Join(defs, ", ") + ")"
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("creating the output table: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	switch pp.Mode {
	case messages.OutputReplace:
		if _, err := tx.Exec(ctx, "drop table if exists "+ident); err != nil {
			return outputError(ident, err)
		}
	case messages.OutputAppend:
		create = "create table if not exists " + ident + " (" + strings.Join(defs, ", ") + ")"
	}
	if _, err := tx.Exec(ctx, create); err != nil {
		return outputError(ident, err)
	}
	if outputKeyLater(pp) {
		if err := createLedger(ctx, tx, p); err != nil {
			return outputError(ident, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return outputError(ident, err)
	}
	return nil
}

// outputError turns the database's refusals of the output table into client errors.
func outputError(ident string, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "42P07": // duplicate_table: created meanwhile
			return &apiError{status: http.StatusConflict, field: "output", msg: fmt.Sprintf("%s exists (mode create)", ident)}
		case "42501": // insufficient_privilege
			return &messages.FieldError{Field: "output", Reason: fmt.Sprintf("the coordinator's role may not create %s: %s", ident, pe.Message)}
		case "25006": // read_only_sql_transaction
			return &messages.FieldError{Field: "output", Reason: fmt.Sprintf("the source's connections are read-only, so %s cannot be created: predictions need a role that may create and write the output table", ident)}
		}
	}
	return fmt.Errorf("creating the output table %s: %w", ident, err)
}

// scoredRecord is the KV value under scored.<id>.<range>: which batches of one range of a
// prediction job are written, so every batch counts once however often it is reported.
type scoredRecord struct {
	// Pages are the written pages in ascending order; Total is the range's page count,
	// known once its last page is written (0 before).
	Pages []int                `json:"pages"`
	Total int                  `json:"total,omitempty"`
	Keys  messages.KeyChecksum `json:"keys"`
	// Evals are the pages' losses and metrics (in page order) when the job evaluates.
	Evals []pageEval `json:"evals,omitempty"`
}

type pageEval struct {
	Page    int                `json:"page"`
	Rows    int64              `json:"rows"`
	Loss    float64            `json:"loss"`
	Metrics map[string]float64 `json:"metrics,omitempty"`
}

func (s *scoredRecord) complete() bool { return s.Total > 0 && len(s.Pages) == s.Total }

func scoredKey(id string, r int) string { return "scored." + id + "." + fmt.Sprint(r) }

// scored is a prediction job's per-range scoring state, in memory.
type scored struct {
	recs []scoredRecord
	revs []uint64
	// pos is the lowest position (in pass 0's order) whose range is not completely written:
	// the lease window counts from it, as it counts from the trainer's position.
	pos int
	n   int // ranges completely written
}

func newScored(ranges int) *scored {
	return &scored{recs: make([]scoredRecord, ranges), revs: make([]uint64, ranges)}
}

// scorerJobs lists the running prediction jobs for the scorers.
func (c *Coordinator) scorerJobs() messages.ScorerJobs {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := messages.ScorerJobs{Jobs: []string{}}
	for _, j := range c.order {
		if j.rec.State == messages.JobRunning && j.prediction() {
			out.Jobs = append(out.Jobs, j.rec.ID)
		}
	}
	return out
}

// reportScored records a batch a scorer has written. The job is done once every range's
// batches are written and read.
func (c *Coordinator) reportScored(ctx context.Context, jobID string, rep messages.ScoreReport) error {
	if rep.ScorerID == "" {
		return &apiError{status: http.StatusBadRequest, msg: "scorer_id is required", field: "scorer_id"}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	j := c.jobs[jobID]
	if j == nil || !j.prediction() {
		return &apiError{status: http.StatusNotFound, msg: fmt.Sprintf("no prediction job %q", jobID)}
	}
	if j.rec.ended() {
		return &apiError{status: http.StatusConflict, msg: fmt.Sprintf("job %s is %s", jobID, j.rec.State)}
	}
	b := rep.Batch
	if b.JobID != jobID || b.Pass != 0 || !j.validTask(b.Pass, b.Range) || b.Page < 0 ||
		!j.passFolded(0) && j.task(0, b.Range).rec.Grants == 0 {
		return &apiError{status: http.StatusConflict, field: "batch", msg: fmt.Sprintf("batch %s is not a batch of job %s that was read", b, jobID)}
	}
	if rep.Keys.Rows < 0 || j.plan.Prediction.Evaluate != (rep.Loss != nil) {
		return &apiError{status: http.StatusBadRequest, field: "loss", msg: fmt.Sprintf("batch %s: a loss is reported exactly when the job evaluates (%v)", b, j.plan.Prediction.Evaluate)}
	}
	rec := j.scored.recs[b.Range]
	i, found := slices.BinarySearch(rec.Pages, b.Page)
	if found || rec.Total > 0 && b.Page >= rec.Total {
		return nil // a redelivered batch (or a retried report): it counts once
	}
	rec.Pages = slices.Insert(slices.Clone(rec.Pages), i, b.Page)
	rec.Keys.Merge(rep.Keys)
	if rep.Last {
		rec.Total = b.Page + 1
	}
	if rep.Loss != nil {
		e := pageEval{Page: b.Page, Rows: rep.Keys.Rows, Loss: *rep.Loss, Metrics: rep.Metrics}
		k, _ := slices.BinarySearchFunc(rec.Evals, b.Page, func(e pageEval, p int) int { return e.Page - p })
		rec.Evals = slices.Insert(slices.Clone(rec.Evals), k, e)
	}
	key := scoredKey(jobID, b.Range)
	rev, err := c.st.put(ctx, key, j.scored.revs[b.Range], rec)
	if err != nil {
		var fresh scoredRecord
		if frev, ok, gerr := c.st.get(ctx, key, &fresh); gerr == nil && ok && frev != j.scored.revs[b.Range] {
			j.scored.recs[b.Range], j.scored.revs[b.Range] = fresh, frev
		}
		return unavailable(err)
	}
	j.scored.recs[b.Range], j.scored.revs[b.Range] = rec, rev
	if rec.complete() {
		j.scored.n++
		j.advanceScored()
		c.log.Debug("range written", "job_id", jobID, "range", b.Range, "rows", rec.Keys.Rows, "scorer", rep.ScorerID)
	}
	return c.maybeFinishPrediction(ctx, j)
}

// advanceScored moves the window's start past the ranges completely written.
func (j *job) advanceScored() {
	order := j.pass(0).order
	for j.scored.pos < len(order) && j.scored.recs[order[j.scored.pos]].complete() {
		j.scored.pos++
	}
}

// maybeFinishPrediction ends a prediction job once every range is read and written,
// with the model's loss and metrics when it evaluates. Callers hold c.mu.
func (c *Coordinator) maybeFinishPrediction(ctx context.Context, j *job) error {
	if !j.prediction() || j.rec.ended() || !j.allRead() || j.scored.n < len(j.plan.Ranges) {
		return nil
	}
	if j.plan.Prediction.Ledger != "" && j.predictionStatus().Written.Rows == j.folded.RowsRead {
		c.finishOutput(j) // it ends the job once the output table is keyed
		return nil
	}
	return c.endPrediction(ctx, j, nil)
}

// endPrediction records a prediction job whose batches are all written as done, or
// failed when finishing its output table failed. Callers hold c.mu.
func (c *Coordinator) endPrediction(ctx context.Context, j *job, finishErr error) error {
	rec := j.rec
	st := j.predictionStatus()
	rec.State, rec.UpdatedAt = messages.JobDone, c.now()
	if j.plan.Prediction.Evaluate {
		loss, metrics := j.evaluation()
		rec.EvalLoss, rec.EvalMetrics = &loss, metrics
	}
	switch {
	case st.Written.Rows != j.folded.RowsRead:
		rec.State = messages.JobFailed
		rec.Error = fmt.Sprintf("the scorers wrote %d rows, the fetchers read %d", st.Written.Rows, j.folded.RowsRead)
	case finishErr != nil:
		rec.State = messages.JobFailed
		rec.Error = finishFailure(finishErr)
	}
	if err := c.writeJob(ctx, j, rec); err != nil {
		return err
	}
	c.log.Info("prediction job done", "job_id", j.rec.ID, "rows", st.Written.Rows, "state", rec.State)
	c.jobEnded(j)
	return nil
}

// evaluation is the weighted mean of the pages' losses and metrics, summed in range and
// page order so that it does not depend on which scorer wrote what when.
func (j *job) evaluation() (float64, map[string]float64) {
	var rows int64
	var loss float64
	sums := map[string]float64{}
	for _, rec := range j.scored.recs {
		for _, e := range rec.Evals {
			rows += e.Rows
			loss += e.Loss * float64(e.Rows)
			for _, k := range slices.Sorted(maps.Keys(e.Metrics)) {
				sums[k] += e.Metrics[k] * float64(e.Rows)
			}
		}
	}
	if rows == 0 {
		return 0, nil
	}
	for k := range sums {
		sums[k] /= float64(rows)
	}
	return loss / float64(rows), sums
}

// outputName is the output table as schema.table, or "" for an evaluation.
func outputName(pp *messages.PredictionPlan) string {
	if pp.OutputTable == "" {
		return ""
	}
	return pp.OutputSchema + "." + pp.OutputTable
}

// prediction reports whether the job is a prediction job.
func (j *job) prediction() bool { return j.plan != nil && j.plan.Kind == messages.JobKindPrediction }

// predictionStatus is the prediction part of the job's status.
func (j *job) predictionStatus() *messages.PredictionStatus {
	pp := j.plan.Prediction
	st := &messages.PredictionStatus{Model: pp.Model, Output: outputName(pp), Mode: pp.Mode, Task: pp.Task,
		RangesScored: j.scored.n, Loss: j.rec.EvalLoss, Metrics: j.rec.EvalMetrics}
	for _, r := range j.scored.recs {
		st.Written.Merge(r.Keys)
	}
	return st
}

// deleteScorerConsumer removes an ended prediction job's consumer on SCORE.
func (c *Coordinator) deleteScorerConsumer(ctx context.Context, jobID string) error {
	err := c.bus.JetStream().DeleteConsumer(ctx, c.names.ScoreStream(), messages.ScorerDurable(jobID))
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("deleting the scorers' consumer of %s: %w", jobID, err)
	}
	return nil
}
