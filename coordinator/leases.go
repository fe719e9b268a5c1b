package coordinator

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"pgtrain/messages"
)

// idemLease remembers which lease a request with an Idempotency-Key got, so a retried
// request gets the same lease instead of a second one.
type idemLease struct {
	leaseID string
	at      time.Time
}

// grantLease hands out the most urgent leasable range over all running jobs: the one
// closest to its trainer's position, the oldest job first on ties. nil means no work now.
func (c *Coordinator) grantLease(ctx context.Context, worker, idem string) (*messages.Lease, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if idem != "" {
		if prev, ok := c.leaseIdem[idem]; ok {
			if l := c.currentLease(prev.leaseID); l != nil {
				return l, nil
			}
		}
	}
	var j *job
	pass, r, bestDist := 0, 0, 0
	for _, cj := range c.order {
		if cj.rec.State != messages.JobRunning {
			continue
		}
		if p, cr, dist, ok := cj.candidate(now); ok && (j == nil || dist < bestDist) {
			j, pass, r, bestDist = cj, p, cr, dist
		}
	}
	if j == nil {
		return nil, nil
	}
	rec := j.task(pass, r).rec
	if rec.State == taskLeased {
		rec.Expired++
		c.log.Info("lease expired; handing the range over", "job_id", j.rec.ID, "pass", pass, "range", r,
			"old_worker", rec.Worker, "old_lease_id", rec.LeaseID, "new_worker", worker, "next_page", rec.NextPage)
	}
	if rec.NextPage > 0 {
		rec.Resumed++
		c.log.Info("lease granted mid-range; the new holder resumes after the last recorded page", "job_id", j.rec.ID,
			"pass", pass, "range", r, "worker", worker, "next_page", rec.NextPage, "last_key", rec.LastKey)
	}
	rec.State = taskLeased
	rec.Grants++
	rec.LeaseID = leaseID(j.rec.ID, pass, r, rec.Grants)
	rec.Worker = worker
	rec.ExpiresAt = now.Add(c.cfg.LeaseTTL)
	if err := c.writeTask(ctx, j, pass, r, rec); err != nil {
		return nil, err
	}
	if idem != "" {
		c.rememberLease(idem, rec.LeaseID, now)
	}
	c.log.Debug("lease granted", "job_id", j.rec.ID, "pass", pass, "range", r, "worker", worker,
		"lease_id", rec.LeaseID, "next_page", rec.NextPage)
	l := j.lease(pass, r, rec)
	return &l, nil
}

// currentLease returns the lease with this id if it is still held.
func (c *Coordinator) currentLease(id string) *messages.Lease {
	jobID, pass, r, _, ok := parseLeaseID(id)
	if !ok {
		return nil
	}
	j := c.jobs[jobID]
	if j == nil || j.rec.State != messages.JobRunning || !j.validTask(pass, r) || j.passFolded(pass) {
		return nil
	}
	t := j.task(pass, r).rec
	if t.State != taskLeased || t.LeaseID != id {
		return nil
	}
	l := j.lease(pass, r, t)
	return &l
}

func (c *Coordinator) rememberLease(key, id string, now time.Time) {
	// Retries come within seconds; forget keys older than a few TTLs so the map stays small.
	if len(c.leaseIdem) > 1024 {
		for k, v := range c.leaseIdem {
			if now.Sub(v.at) > 4*c.cfg.LeaseTTL {
				delete(c.leaseIdem, k)
			}
		}
	}
	c.leaseIdem[key] = idemLease{leaseID: id, at: now}
}

// reportLease renews a lease and records progress, completes it (Done) or hands it back
// (Release). Reports are idempotent and never move a lease backwards.
func (c *Coordinator) reportLease(ctx context.Context, id string, p messages.LeaseProgress) (*messages.Lease, error) {
	if p.WorkerID == "" {
		return nil, &apiError{status: http.StatusBadRequest, msg: "worker_id is required", field: "worker_id"}
	}
	jobID, pass, r, _, ok := parseLeaseID(id)
	if !ok {
		return nil, &apiError{status: http.StatusNotFound, msg: fmt.Sprintf("no lease %q", id)}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	j := c.jobs[jobID]
	if j == nil {
		// The job is gone (its state was removed): whatever the holder does is lost work.
		return nil, &apiError{status: http.StatusConflict, msg: fmt.Sprintf("lease %s is lost: no job %q", id, jobID)}
	}
	if j.rec.State != messages.JobRunning {
		return nil, &apiError{status: http.StatusConflict, msg: fmt.Sprintf("job %s is %s", jobID, j.rec.State), jobState: j.rec.State}
	}
	if !j.validTask(pass, r) {
		return nil, &apiError{status: http.StatusNotFound, msg: fmt.Sprintf("no lease %q", id)}
	}
	var rec taskRecord
	if j.passFolded(pass) {
		// Every range of the pass is done; only the KV record remembers who did this one
		// (for a retried completion).
		if _, ok, err := c.st.get(ctx, taskKey(jobID, pass, r), &rec); err != nil {
			return nil, unavailable(err)
		} else if !ok {
			return nil, &apiError{status: http.StatusNotFound, msg: fmt.Sprintf("no lease %q", id)}
		}
	} else {
		rec = j.task(pass, r).rec
	}
	lost := func(why string) error {
		c.log.Info("report from a stale lease holder", "job_id", jobID, "pass", pass, "range", r,
			"lease_id", id, "worker", p.WorkerID, "holder", rec.Worker, "reason", why)
		return &apiError{status: http.StatusConflict, msg: fmt.Sprintf("lease %s is lost: %s", id, why)}
	}
	if rec.LeaseID != id {
		return nil, lost("the range was leased again to " + rec.Worker)
	}
	if p.WorkerID != rec.Worker {
		return nil, lost("it is held by " + rec.Worker)
	}
	switch {
	case rec.State == taskDone:
		// A retried completion (or a late renewal) of a finished range: nothing changes.
		l := j.lease(pass, r, rec)
		return &l, nil
	case rec.State == taskPending && p.Release:
		l := j.lease(pass, r, rec)
		return &l, nil
	case rec.State == taskPending:
		return nil, lost("it was released")
	}
	if p.NextPage > rec.NextPage && p.LastKeyText != nil && len(p.LastKeyText) != len(j.plan.KeyColumns) {
		return nil, &apiError{status: http.StatusBadRequest, field: "last_key_text",
			msg: fmt.Sprintf("a last key of %d columns for a key of %d", len(p.LastKeyText), len(j.plan.KeyColumns))}
	}
	now := c.now()
	if p.NextPage > rec.NextPage {
		rec.NextPage, rec.LastKey, rec.LastKeyText, rec.Rows = p.NextPage, p.LastKey, p.LastKeyText, p.Rows
	}
	switch {
	case p.Done:
		rec.State = taskDone
	case p.Release:
		rec.State = taskPending
		rec.Released++
		c.log.Info("lease released", "job_id", jobID, "pass", pass, "range", r, "worker", rec.Worker, "next_page", rec.NextPage)
	default:
		rec.ExpiresAt = now.Add(c.cfg.LeaseTTL)
	}
	if err := c.writeTask(ctx, j, pass, r, rec); err != nil {
		return nil, err
	}
	if p.Done {
		c.log.Debug("range done", "job_id", jobID, "pass", pass, "range", r, "worker", rec.Worker, "rows", rec.Rows)
		j.advance()
		// Fetchers join the snapshot on every read pass, so it lives until the last range
		// is read (with replay, that is the end of pass 0).
		if j.snap != nil && j.allRead() {
			c.releaseSnapshot(j, "every read pass is done")
		}
		// The scorers may have written the range's last batch before this report came.
		if err := c.maybeFinishPrediction(ctx, j); err != nil {
			c.log.Warn("ending a prediction job whose ranges are all written", "job_id", jobID, "error", err)
		}
	}
	l := j.lease(pass, r, rec)
	return &l, nil
}

// writeTask stores a task record (compare-and-set) and then the in-memory copy. On a
// concurrent write the memory is reloaded from KV, so the retried request sees the truth.
func (c *Coordinator) writeTask(ctx context.Context, j *job, pass, r int, rec taskRecord) error {
	t := j.task(pass, r)
	key := taskKey(j.rec.ID, pass, r)
	rev, err := c.st.put(ctx, key, t.rev, rec)
	if err != nil {
		var fresh taskRecord
		if frev, ok, gerr := c.st.get(ctx, key, &fresh); gerr == nil && ok && frev != t.rev {
			t.rec, t.rev = fresh, frev
		}
		return unavailable(err)
	}
	t.rec, t.rev = rec, rev
	return nil
}

// checkFailer refuses to fail a job for anyone but its trainer or a fetcher that holds a
// lease on one of its ranges. Callers hold c.mu.
func (c *Coordinator) checkFailer(j *job, req messages.FailRequest) error {
	if req.TrainerID != "" && j.sweep() {
		_, err := j.checkVariantTrainer(req.Variant, req.TrainerID)
		return err
	}
	if req.TrainerID != "" {
		return j.checkTrainer(req.TrainerID)
	}
	if req.WorkerID == "" {
		// A preprocessor's page exists only if its range was granted in that pass.
		b := req.Batch
		if b.JobID != j.rec.ID || !j.validTask(b.Pass, b.Range) || b.Page < 0 ||
			!j.passFolded(b.Pass) && j.task(b.Pass, b.Range).rec.Grants == 0 {
			return &apiError{status: http.StatusConflict, msg: fmt.Sprintf("page %s is not a page of job %s that was read", b, j.rec.ID)}
		}
		return nil
	}
	jobID, pass, r, _, ok := parseLeaseID(req.LeaseID)
	if !ok || jobID != j.rec.ID || !j.validTask(pass, r) || j.passFolded(pass) {
		return &apiError{status: http.StatusConflict, msg: fmt.Sprintf("%q is not a lease of job %s held now", req.LeaseID, j.rec.ID)}
	}
	if t := j.task(pass, r).rec; t.State != taskLeased || t.LeaseID != req.LeaseID || t.Worker != req.WorkerID {
		return &apiError{status: http.StatusConflict, msg: fmt.Sprintf("lease %s is not held by %s", req.LeaseID, req.WorkerID)}
	}
	return nil
}
