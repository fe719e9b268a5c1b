package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"pgtrain/internal/bus"
	"pgtrain/messages"
)

// cancelJob ends a running job as cancelled. Grants stop at once; a fetcher in the middle of
// a page publishes it and learns at its next report (409) that its lease is gone; the trainer
// learns it at its next report or heartbeat and stops with its last checkpoint on disk. The
// snapshot is released and the job's batches purged as for any ended job. Cancelling a
// cancelled job changes nothing; a done or failed job is a 409 naming its state.
func (c *Coordinator) cancelJob(ctx context.Context, id string) (messages.JobStatus, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	j := c.jobs[id]
	if j == nil {
		return messages.JobStatus{}, &apiError{status: http.StatusNotFound, msg: fmt.Sprintf("no job %q", id)}
	}
	switch j.rec.State {
	case messages.JobCancelled:
		return j.status(c.now()), nil
	case messages.JobRunning:
	default:
		return messages.JobStatus{}, &apiError{status: http.StatusConflict, jobState: j.rec.State,
			msg: fmt.Sprintf("job %s is %s: only a running job can be cancelled", id, j.rec.State)}
	}
	rec := j.rec
	rec.State, rec.UpdatedAt = messages.JobCancelled, c.now()
	if err := c.writeJob(ctx, j, rec); err != nil {
		return messages.JobStatus{}, err
	}
	c.jobEnded(j)
	return j.status(c.now()), nil
}

// deleteJob removes an ended job: its batches on RAW and READY, its plan, its task records,
// the idempotency keys that name it, and last its record (so a delete cut short leaves a job
// that can be deleted again, also after a restart). A running job is a 409: cancel it first.
func (c *Coordinator) deleteJob(ctx context.Context, id string) error {
	c.mu.Lock()
	j := c.jobs[id]
	if j == nil {
		c.mu.Unlock()
		return &apiError{status: http.StatusNotFound, msg: fmt.Sprintf("no job %q", id)}
	}
	if !j.rec.ended() {
		c.mu.Unlock()
		return &apiError{status: http.StatusConflict, jobState: j.rec.State,
			msg: fmt.Sprintf("job %s is %s: cancel it first (POST /v1/jobs/%s/cancel)", id, j.rec.State, id)}
	}
	// The ended job's own cleanup must not write its record back meanwhile.
	j.deleting = true
	c.mu.Unlock()
	if err := c.removeJobData(ctx, id); err != nil {
		c.mu.Lock()
		j.deleting = false
		c.mu.Unlock()
		return unavailable(fmt.Errorf("deleting job %s: %w", id, err))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.jobs[id] == j {
		delete(c.jobs, id)
		for i, o := range c.order {
			if o == j {
				c.order = append(c.order[:i], c.order[i+1:]...)
				break
			}
		}
		c.log.Info("job deleted", "job_id", id, "state", j.rec.State)
	}
	return nil
}

// removeJobData purges everything a job left on the bus and in the state bucket.
func (c *Coordinator) removeJobData(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := errors.Join(
		c.purge(ctx, c.names.ReadyStream(), c.names.ReadyJobSubjects(id)),
		c.purge(ctx, c.names.RawStream(), c.names.RawJobSubjects(id)),
		c.purge(ctx, c.names.ScoreStream(), c.names.ScoreJobSubjects(id)),
	); err != nil {
		return err
	}
	kv, js := c.bus.StateKV(), c.bus.JetStream()
	var idem []string
	err := c.st.scan(ctx, idemKey("*"), func(e jetstream.KeyValueEntry) error {
		var named string
		if json.Unmarshal(e.Value(), &named) == nil && named == id {
			idem = append(idem, e.Key())
		}
		return nil
	})
	if err != nil {
		return err
	}
	// The record goes last: a job without it is gone, whatever else is left.
	for _, k := range append(idem, "range."+id+".>") {
		if err := bus.PurgeKeys(ctx, js, kv, k); err != nil {
			return err
		}
	}
	if err := bus.DeletePlan(ctx, js, kv, id); err != nil {
		return err
	}
	return bus.PurgeKeys(ctx, js, kv, jobKey(id))
}

// retentionEvery is how often finished jobs are checked against the retention bounds; a job
// that ends also starts a check.
const retentionEvery = time.Minute

// retention deletes finished jobs past the retention bounds until ctx ends.
func (c *Coordinator) retention(ctx context.Context) {
	tick := time.NewTicker(retentionEvery)
	defer tick.Stop()
	for {
		c.applyRetention(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-c.jobsEnded:
		}
	}
}

// applyRetention deletes, as DELETE does, the oldest finished jobs beyond cfg.KeepJobs and
// those that ended more than cfg.KeepJobsFor ago.
func (c *Coordinator) applyRetention(ctx context.Context) {
	type victim struct {
		id, why string
	}
	var victims []victim
	c.mu.Lock()
	now := c.now()
	finished := 0
	for _, j := range c.order {
		if j.rec.ended() && !j.deleting {
			finished++
		}
	}
	excess := finished - c.cfg.KeepJobs
	for _, j := range c.order { // the oldest first
		if !j.rec.ended() || j.deleting {
			continue
		}
		switch {
		case excess > 0:
			excess--
			victims = append(victims, victim{j.rec.ID, fmt.Sprintf("more than %d finished jobs (--keep-jobs)", c.cfg.KeepJobs)})
		case now.Sub(j.rec.UpdatedAt) > c.cfg.KeepJobsFor:
			victims = append(victims, victim{j.rec.ID, fmt.Sprintf("ended more than %s ago (--keep-jobs-for)", c.cfg.KeepJobsFor)})
		}
	}
	c.mu.Unlock()
	for _, v := range victims {
		if ctx.Err() != nil {
			return
		}
		if err := c.deleteJob(ctx, v.id); err != nil {
			var ae *apiError
			if errors.As(err, &ae) && ae.status < 500 {
				continue // deleted meanwhile
			}
			c.log.Warn("deleting a finished job for retention; will retry", "job_id", v.id, "error", err)
			continue
		}
		c.log.Info("finished job deleted by retention", "job_id", v.id, "reason", v.why)
	}
}

// jobEndedSignal wakes the retention loop (without waiting: one pending wake-up is enough).
func (c *Coordinator) jobEndedSignal() {
	select {
	case c.jobsEnded <- struct{}{}:
	default:
	}
}
