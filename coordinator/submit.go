package coordinator

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"pgtrain/internal/bus"
	"pgtrain/internal/metrics"
	"pgtrain/messages"
	"pgtrain/model"
)

// submitCall is one planning in flight for an Idempotency-Key: a retried submission waits
// for it instead of planning (and creating) the job twice.
type submitCall struct {
	done   chan struct{}
	status messages.JobStatus
	err    error
}

func validIdemKey(k string) bool {
	return len(k) <= 64 && strings.IndexFunc(k, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	}) < 0
}

// submit plans and creates a job with create (a training or a prediction job), once per
// idempotency key.
func (c *Coordinator) submit(ctx context.Context, body []byte, idem string, create func(context.Context, []byte) (messages.JobStatus, error)) (messages.JobStatus, error) {
	if idem == "" {
		return create(ctx, body)
	}
	if !validIdemKey(idem) {
		return messages.JobStatus{}, &apiError{status: http.StatusBadRequest, msg: "Idempotency-Key: want 1 to 64 of a-z, A-Z, 0-9, '-', '_'"}
	}
	c.mu.Lock()
	call, inFlight := c.submits[idem]
	if !inFlight {
		call = &submitCall{done: make(chan struct{})}
		c.submits[idem] = call
	}
	c.mu.Unlock()
	if inFlight {
		select {
		case <-call.done:
			return call.status, call.err
		case <-ctx.Done():
			return messages.JobStatus{}, &apiError{status: http.StatusServiceUnavailable, msg: "the job is still being planned; retry"}
		}
	}
	defer func() {
		close(call.done)
		c.mu.Lock()
		delete(c.submits, idem) // from now on the KV record answers (or a retry plans again)
		c.mu.Unlock()
	}()
	// A submission that completed before a restart is recorded in KV.
	var jobID string
	if _, ok, err := c.st.get(ctx, idemKey(idem), &jobID); err != nil {
		call.err = unavailable(err)
		return call.status, call.err
	} else if ok {
		c.mu.Lock()
		if j := c.jobs[jobID]; j != nil {
			call.status = j.status(c.now())
		}
		c.mu.Unlock()
		if call.status.ID == "" {
			call.err = fmt.Errorf("idempotency key names job %q, which is not loaded", jobID)
		}
		return call.status, call.err
	}
	call.status, call.err = create(ctx, body)
	if call.err == nil {
		if _, err := c.st.put(ctx, idemKey(idem), 0, call.status.ID); err != nil {
			c.log.Warn("recording the idempotency key of a new job", "job_id", call.status.ID, "error", err)
		}
	}
	return call.status, call.err
}

// reserveSnapshot counts a snapshot job before it is planned, so that concurrent
// submissions cannot pass the limits: cfg.MaxSnapshotJobs in all, and one connection of
// each source's pool left for everything else. Releasing the snapshot gives it back.
func (c *Coordinator) reserveSnapshot(source string, pool *pgxpool.Pool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	open := 0
	for _, n := range c.snapshots {
		open += n
	}
	retry := &apiError{status: http.StatusTooManyRequests, field: "consistency", retryAfter: snapshotRetryAfter}
	switch {
	case open >= c.cfg.MaxSnapshotJobs:
		retry.msg = fmt.Sprintf("%d snapshot jobs are open, the limit (--max-snapshot-jobs %d): retry when one has read its table",
			open, c.cfg.MaxSnapshotJobs)
	case c.snapshots[source] >= int(pool.Config().MaxConns)-1:
		retry.msg = fmt.Sprintf("%d snapshot jobs hold connections of source %q, whose pool has %d (--max-conns): retry when one has read its table",
			c.snapshots[source], source, pool.Config().MaxConns)
	default:
		c.snapshots[source]++
		return nil
	}
	return retry
}

// snapshotRetryAfter is the Retry-After of a refused snapshot job: snapshots live for a
// whole read pass, so there is no point in retrying at once.
const snapshotRetryAfter = 30 * time.Second

// snapshotExpired fails a job whose snapshot reached cfg.SnapshotMaxAge before every range
// was read, and releases the snapshot.
func (c *Coordinator) snapshotExpired(j *job, s *snapshot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if j.snap != s {
		return // released already
	}
	if j.rec.State == messages.JobRunning {
		rec := j.rec
		rec.State, rec.UpdatedAt = messages.JobFailed, c.now()
		rec.Error = fmt.Sprintf("the snapshot reached its max age (%s, --snapshot-max-age) before every range was read", c.cfg.SnapshotMaxAge)
		if err := c.writeJob(c.bgCtx, j, rec); err != nil {
			c.log.Warn("failing a job whose snapshot expired", "job_id", rec.ID, "error", err)
		} else {
			c.jobEnded(j)
		}
	}
	c.releaseSnapshot(j, "the snapshot reached its max age")
}

// checkPlanSize refuses a plan the state bucket cannot hold: a KV value is one NATS message,
// so a plan over the server's max payload would fail to store however often it is retried.
// Vocabularies are what make a plan large; the error names the largest and the sizes.
func checkPlanSize(p *messages.Plan, maxPayload int) error {
	b, err := messages.EncodePlan(p)
	if err != nil {
		return fmt.Errorf("encoding the plan: %w", err)
	}
	// Leave room for the KV message's headers and subject.
	limit := maxPayload - 1024
	if len(b) <= limit {
		return nil
	}
	field, values, bytes := "features", 0, 0
	for i, cp := range append(slices.Clone(p.Features), p.Label) {
		n := 0
		for _, v := range cp.Vocabulary {
			n += len(v)
		}
		if n > bytes {
			field, values, bytes = fmt.Sprintf("features[%d].vocab_size", i), len(cp.Vocabulary), n
			if i == len(p.Features) {
				field = "label.vocab_size"
			}
		}
	}
	reason := fmt.Sprintf("the job's plan takes %d bytes, more than the %d the bus takes in one message (NATS max_payload %d, less 1 KiB of headers)",
		len(b), limit, maxPayload)
	if bytes > 0 {
		reason += fmt.Sprintf("; the largest vocabulary holds %d values of %d bytes in all: lower vocab_size, or raise the server's max_payload", values, bytes)
	}
	// The spec asks for more than the bus carries: the caller fixes it, a retry never does.
	return &apiError{status: http.StatusBadRequest, field: field, msg: reason}
}

// createJob parses and plans a spec, stores the plan and starts the job.
func (c *Coordinator) createJob(ctx context.Context, body []byte) (messages.JobStatus, error) {
	spec, err := messages.ParseJobSpec(body)
	if err != nil {
		return messages.JobStatus{}, err
	}
	// Every bound that needs no database is checked before anything is built for the job.
	if err := spec.CheckLimits(c.cfg.Limits.spec()); err != nil {
		return messages.JobStatus{}, err
	}
	ms, err := model.ParseSpec(spec.Model)
	if err != nil {
		return messages.JobStatus{}, &messages.FieldError{Field: "model", Reason: err.Error()}
	}
	if model.CompileOf(spec).Loss == "" {
		return messages.JobStatus{}, &messages.FieldError{Field: "loss",
			Reason: "is required: neither the spec nor the model document (compile_config, training_config or trainingConfig) names a loss"}
	}
	if err := ms.CheckSize(0, c.cfg.Limits.model()); err != nil {
		return messages.JobStatus{}, &messages.FieldError{Field: "model", Reason: err.Error()}
	}
	if err := checkBackend(spec, ms); err != nil {
		return messages.JobStatus{}, err
	}
	var from *messages.ModelMeta
	if spec.InitFrom != "" {
		if from, err = c.initModel(ctx, spec, ms); err != nil {
			return messages.JobStatus{}, err
		}
	}
	pool := c.sources[spec.Source]
	if pool == nil {
		names := slices.Sorted(maps.Keys(c.sources))
		for i, n := range names {
			if n == "" {
				names[i] = `"" (default)`
			} else {
				names[i] = fmt.Sprintf("%q", n)
			}
		}
		return messages.JobStatus{}, &messages.FieldError{Field: "source",
			Reason: fmt.Sprintf("unknown source %q (configured: %s)", spec.Source, strings.Join(names, ", "))}
	}
	release, err := c.reserveSource(spec.Source)
	if err != nil {
		return messages.JobStatus{}, err
	}
	defer release()
	// Planning outlives an impatient client: its retry (same Idempotency-Key) waits for it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.PlanTimeout)
	defer cancel()
	snapshotted := spec.Consistency == messages.ConsistencySnapshot
	if snapshotted {
		if err := c.reserveSnapshot(spec.Source, pool); err != nil {
			return messages.JobStatus{}, err
		}
	}
	keep := false
	defer func() {
		if snapshotted && !keep {
			c.mu.Lock()
			c.snapshots[spec.Source]--
			c.mu.Unlock()
		}
	}()
	planStart := time.Now()
	timer := newPlanTimer()
	tx, snap, err := beginPlan(ctx, pool, snapshotted, c.cfg.SnapshotMaxAge)
	if err != nil {
		return messages.JobStatus{}, err
	}
	timer.done("begin", time.Time{})
	defer func() {
		if keep {
			return
		}
		if snap != nil {
			_ = snap.close(context.WithoutCancel(ctx))
		} else {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	jobID := newJobID(spec.Table)
	allowed := func(schema string) error {
		if c.schemas.allows(spec.Source, schema) {
			return nil
		}
		return &messages.FieldError{Field: "table", Reason: fmt.Sprintf("schema %q is not readable through this coordinator (source %q allows %s)",
			schema, spec.Source, c.schemas.describe(spec.Source))}
	}
	p, err := planSpec(ctx, planConns{tx: tx, pool: pool, helpers: c.cfg.PlanConns - 1, timer: timer}, spec, jobID, allowed,
		sizing{maxPayload: c.maxPayload(), readyMaxBytes: c.cfg.ReadyMaxBytes, window: c.cfg.Window, vocabLimit: c.cfg.Limits.VocabSize,
			vocabValueBytes: c.cfg.Limits.VocabValueBytes}, from)
	if err != nil {
		return messages.JobStatus{}, err
	}
	if _, ok := nothingNew(p); ok {
		// Nothing to read: the job ends at once, and holds no snapshot.
		if snap != nil {
			_ = snap.close(context.WithoutCancel(ctx))
			snap = nil
		} else {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
		keep = true
		c.mu.Lock()
		if snapshotted {
			c.snapshots[spec.Source]--
		}
		c.mu.Unlock()
		return c.storeJob(ctx, p, spec.Table, nil, spec.Source)
	}
	// The input width is known now: the model's size is checked before checkModel builds it.
	if err := ms.CheckSize(p.InputDim, c.cfg.Limits.model()); err != nil {
		return messages.JobStatus{}, &messages.FieldError{Field: "model", Reason: err.Error()}
	}
	if err := checkModel(p, ms); err != nil {
		return messages.JobStatus{}, err
	}
	if err := checkVariants(p, ms, c.cfg.Limits.model()); err != nil {
		return messages.JobStatus{}, err
	}
	if err := checkSweepReplay(p, c.cfg.ReadyMaxBytes); err != nil {
		return messages.JobStatus{}, err
	}
	if err := checkPlanSize(p, c.maxPayload()); err != nil {
		return messages.JobStatus{}, err
	}
	if snap != nil {
		p.Snapshot = snap.id
	} else if err := tx.Commit(ctx); err != nil {
		return messages.JobStatus{}, fmt.Errorf("ending the planning transaction: %w", err)
	}
	c.m.planSeconds.WithLabelValues(metrics.SourceLabel(spec.Source)).Observe(time.Since(planStart).Seconds())
	timer.done("checked", time.Time{})
	status, err := c.storeJob(ctx, p, spec.Table, snap, spec.Source)
	if err != nil {
		return messages.JobStatus{}, err
	}
	keep = true
	timer.done("stored", time.Time{})
	timer.log(c.log, p.JobID)
	c.log.Info("job planned", "job_id", p.JobID, "table", p.Schema+"."+p.Table, "rows", p.Expected.Rows+p.ExpectedValid.Rows,
		"ranges", len(p.Ranges), "validation_ranges", p.ValidationRanges, "page_rows", p.PageRows,
		"input_dim", p.InputDim, "label_dim", p.LabelDim, "replay", p.Replay, "snapshot", p.Snapshot)
	return status, nil
}

// storeJob stores a planned job: its plan, then its record, and adds it to the running
// jobs. The id is random: on the rare collision with another job's plan it picks another.
// Any other error may have lost only the acknowledgement, so the same id is tried again
// (and finds its own plan): a new id would leave the first plan behind with no job. A
// snapshot the job holds expires after Config.SnapshotMaxAge.
func (c *Coordinator) storeJob(ctx context.Context, p *messages.Plan, table string, snap *snapshot, source string) (messages.JobStatus, error) {
	for attempt := 0; ; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, kvTimeout)
		err := bus.PutPlan(pctx, c.bus.StateKV(), p)
		cancel()
		if err == nil {
			break
		}
		if attempt == 3 {
			return messages.JobStatus{}, unavailable(err)
		}
		if errors.Is(err, jetstream.ErrKeyExists) {
			p.JobID = newJobID(table)
		}
	}
	now := c.now()
	rec := jobRecord{
		ID:        p.JobID,
		State:     messages.JobRunning,
		Table:     p.Schema + "." + p.Table,
		CreatedAt: now,
		UpdatedAt: now,
		Variants:  newVariants(p),
	}
	if reason, ok := nothingNew(p); ok {
		rec.State, rec.Reason = messages.JobNothingNew, reason
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Creation times are unique and increasing, so that the job order (creation time, then
	// id; what list cursors follow) is the order of submission, also within one clock tick.
	if n := len(c.order); n > 0 {
		if last := c.order[n-1].rec.CreatedAt; rec.CreatedAt.UnixNano() <= last.UnixNano() {
			rec.CreatedAt = last.Round(0).Add(time.Nanosecond)
		}
	}
	rev, err := c.st.put(ctx, jobKey(rec.ID), 0, rec)
	if err != nil {
		return messages.JobStatus{}, unavailable(err)
	}
	j := &job{rec: rec, rev: rev, snap: snap}
	j.init(p)
	c.addJob(j)
	if j.rec.ended() {
		c.jobEnded(j)
	}
	if snap != nil {
		snap.source = source
		snap.expiry = time.AfterFunc(c.cfg.SnapshotMaxAge, func() { c.snapshotExpired(j, snap) })
	}
	return j.status(now), nil
}
