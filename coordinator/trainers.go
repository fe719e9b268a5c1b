package coordinator

import (
	"context"
	"fmt"
	"net/http"
	"slices"

	"pgtrain/messages"
)

// claimJob gives a trainer work: the job (or sweep variant) it already trains (a restarted
// trainer gets it back), else the oldest running job, or sweep variant, with no live
// trainer. A zero answer means none.
func (c *Coordinator) claimJob(ctx context.Context, trainerID string) (messages.ClaimResponse, error) {
	if trainerID == "" {
		return messages.ClaimResponse{}, &apiError{status: http.StatusBadRequest, msg: "trainer_id is required", field: "trainer_id"}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	silent := 3 * c.cfg.LeaseTTL
	var pick *job
	for _, j := range c.order {
		if j.rec.State != messages.JobRunning || j.prediction() {
			continue
		}
		if j.sweep() {
			if i := j.ownVariant(trainerID); i >= 0 {
				return c.claimVariant(ctx, j, i, trainerID)
			}
		} else if j.rec.Trainer.ID == trainerID {
			pick = j
			break
		}
	}
	if pick == nil {
		for _, j := range c.order {
			if j.rec.State != messages.JobRunning || j.prediction() {
				continue // scorers, not trainers, finish prediction jobs
			}
			if j.sweep() {
				if i := j.freeVariant(now, silent); i >= 0 {
					return c.claimVariant(ctx, j, i, trainerID)
				}
				continue
			}
			tr := j.rec.Trainer
			if tr.ID == "" || now.Sub(tr.SeenAt) > silent {
				pick = j
				break
			}
		}
	}
	if pick == nil {
		return messages.ClaimResponse{}, nil
	}
	rec := pick.rec
	if rec.Trainer.ID != "" && rec.Trainer.ID != trainerID {
		c.log.Info("trainer silent; job handed to another trainer", "job_id", rec.ID,
			"old_trainer", rec.Trainer.ID, "new_trainer", trainerID, "last_seen", rec.Trainer.SeenAt)
	}
	rec.Trainer.ID = trainerID
	rec.Trainer.SeenAt = now
	rec.UpdatedAt = now
	if err := c.writeJob(ctx, pick, rec); err != nil {
		return messages.ClaimResponse{}, err
	}
	c.log.Info("job claimed by trainer", "job_id", rec.ID, "trainer", trainerID)
	return messages.ClaimResponse{JobID: rec.ID}, nil
}

// trainerProgress records the trainer's position and results; Done or Error ends the job.
func (c *Coordinator) trainerProgress(ctx context.Context, jobID string, p messages.TrainerProgress) error {
	if p.TrainerID == "" {
		return &apiError{status: http.StatusBadRequest, msg: "trainer_id is required", field: "trainer_id"}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	j := c.jobs[jobID]
	if j == nil {
		return &apiError{status: http.StatusNotFound, msg: fmt.Sprintf("no job %q", jobID)}
	}
	if j.rec.ended() {
		if p.Done && j.rec.State == messages.JobDone && j.finalReport(p) {
			return nil // a retried final report
		}
		return &apiError{status: http.StatusConflict, msg: fmt.Sprintf("job %s is %s", jobID, j.rec.State), jobState: j.rec.State}
	}
	if j.sweep() {
		return c.variantProgress(ctx, j, p)
	}
	if err := j.checkTrainer(p.TrainerID); err != nil {
		return err
	}
	if p.Epoch < 0 || p.Epoch > j.plan.Spec.Epochs || p.Consumed < 0 || p.Consumed > len(j.plan.Ranges) {
		return &apiError{status: http.StatusBadRequest, msg: fmt.Sprintf("position epoch %d, consumed %d is outside the plan's %d epochs of %d ranges",
			p.Epoch, p.Consumed, j.plan.Spec.Epochs, len(j.plan.Ranges))}
	}
	now := c.now()
	rec := j.rec
	rec.Results = slices.Clone(j.rec.Results)
	rec.Trainer.SeenAt = now
	// Reports can arrive out of order when retried: the window never moves backwards.
	if p.Epoch*len(j.plan.Ranges)+p.Consumed >= j.trainerPos() {
		rec.Trainer.Epoch, rec.Trainer.Consumed, rec.Trainer.Rows = p.Epoch, p.Consumed, p.Rows
	}
	if p.Result != nil && !slices.ContainsFunc(rec.Results, func(r messages.EpochResult) bool { return r.Epoch == p.Result.Epoch }) {
		if p.Result.Best {
			// One best epoch: a later best replaces the earlier one's mark.
			for i := range rec.Results {
				rec.Results[i].Best = false
			}
		}
		rec.Results = append(rec.Results, *p.Result)
		slices.SortFunc(rec.Results, func(a, b messages.EpochResult) int { return a.Epoch - b.Epoch })
	}
	switch {
	case p.Error != "":
		rec.State, rec.Error = messages.JobFailed, "trainer: "+p.Error
	case p.Done:
		// Where the trainer's export puts it, under its out dir: nothing a client sends.
		rec.State, rec.ModelPath = messages.JobDone, messages.ModelDir(jobID)
		rec.StopReason, rec.BestEpoch = p.Stopped, p.BestEpoch
		rec.BestModel = j.plan.Spec.ModelCheckpoint != nil && p.BestEpoch != nil
	}
	rec.UpdatedAt = now
	if err := c.writeJob(ctx, j, rec); err != nil {
		return err
	}
	if rec.ended() {
		c.jobEnded(j)
	}
	return nil
}

// finalReport reports whether p comes from the trainer that finished the job (or, in a
// sweep, the variant p names).
func (j *job) finalReport(p messages.TrainerProgress) bool {
	if !j.sweep() {
		return p.TrainerID == j.rec.Trainer.ID
	}
	i, err := j.checkVariantTrainer(p.Variant, p.TrainerID)
	return err == nil && j.rec.Variants[i].State == variantDone
}

// checkTrainer refuses a report from a trainer that has not claimed the job (or lost it).
func (j *job) checkTrainer(id string) error {
	switch j.rec.Trainer.ID {
	case id:
		return nil
	case "":
		return &apiError{status: http.StatusConflict, msg: fmt.Sprintf("job %s is not claimed by %s: claim it first", j.rec.ID, id)}
	default:
		return &apiError{status: http.StatusConflict, msg: fmt.Sprintf("job %s is trained by %s now", j.rec.ID, j.rec.Trainer.ID)}
	}
}

// failJob ends a job as failed, for the job's trainer or a fetcher that holds a lease on it;
// failing an ended job changes nothing.
func (c *Coordinator) failJob(ctx context.Context, jobID string, req messages.FailRequest) (messages.JobStatus, error) {
	switch {
	case req.TrainerID == "" && req.WorkerID == "" && req.Batch == nil:
		return messages.JobStatus{}, &apiError{status: http.StatusBadRequest,
			msg: "trainer_id (a trainer), worker_id with lease_id (a fetcher) or batch (a preprocessor) is required", field: "trainer_id"}
	case req.WorkerID != "" && req.LeaseID == "":
		return messages.JobStatus{}, &apiError{status: http.StatusBadRequest, msg: "lease_id is required with worker_id", field: "lease_id"}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	j := c.jobs[jobID]
	if j == nil {
		return messages.JobStatus{}, &apiError{status: http.StatusNotFound, msg: fmt.Sprintf("no job %q", jobID)}
	}
	if !j.rec.ended() {
		if err := c.checkFailer(j, req); err != nil {
			return messages.JobStatus{}, err
		}
		reason := req.Error
		if reason == "" {
			reason = "failed by a worker"
		}
		rec := j.rec
		rec.State, rec.Error, rec.UpdatedAt = messages.JobFailed, reason, c.now()
		if err := c.writeJob(ctx, j, rec); err != nil {
			return messages.JobStatus{}, err
		}
		c.jobEnded(j)
	}
	return j.status(c.now()), nil
}

// writeJob stores a job record (compare-and-set), then the in-memory copy.
func (c *Coordinator) writeJob(ctx context.Context, j *job, rec jobRecord) error {
	key := jobKey(j.rec.ID)
	rev, err := c.st.put(ctx, key, j.rev, rec)
	if err != nil {
		var fresh jobRecord
		if frev, ok, gerr := c.st.get(ctx, key, &fresh); gerr == nil && ok && frev != j.rev {
			j.rec, j.rev = fresh, frev
		}
		return unavailable(err)
	}
	j.rec, j.rev = rec, rev
	return nil
}
