package coordinator

import (
	"maps"
	"slices"
	"time"

	"pgtrain/messages"
)

// task is one range of one read pass, with the KV revision of its record (0: no record yet).
type task struct {
	rec taskRecord
	rev uint64
}

// job is the in-memory copy of a job's state. Every field is guarded by Coordinator.mu; the
// KV records are the truth and are always written first.
type job struct {
	rec  jobRecord
	rev  uint64
	plan *messages.Plan // nil for a job that could not be loaded (it is failed)
	// passes holds the read passes in play: from firstOpen's pass up to the furthest one a
	// grant looked at. Earlier passes are all done (their counters are in folded), later
	// ones all pending, so memory follows the lease window, not epochs × ranges.
	passes map[int]*passState
	folded messages.FetchSummary
	// firstOpen is the lowest global position whose task is not done; grants scan from it.
	firstOpen int
	snap      *snapshot
	// scored is a prediction job's written batches per range (nil for training).
	scored *scored
	// loadErr is why a job's state could not be loaded at start; such a job is failed.
	loadErr error
	// deleting is set while DELETE removes the job's data.
	deleting bool
	// finishing is set while a prediction job's output table is being keyed.
	finishing bool
	// orders caches a sweep's variants' range orders while its read pass is open.
	orders map[variantEpoch][]int
}

// passState is one read pass in play: its range order (the trainer's) and its tasks.
type passState struct {
	order []int
	tasks []task // by range index
}

func (j *job) init(p *messages.Plan) {
	j.plan = p
	j.passes = map[int]*passState{}
	if p.Kind == messages.JobKindPrediction {
		j.scored = newScored(len(p.Ranges))
	}
}

// pass returns a read pass that is not folded, creating it (every task pending) on first use.
func (j *job) pass(pass int) *passState {
	ps := j.passes[pass]
	if ps == nil {
		ps = &passState{order: j.plan.EpochOrder(pass), tasks: make([]task, len(j.plan.Ranges))}
		for r := range ps.tasks {
			ps.tasks[r].rec.State = taskPending
		}
		j.passes[pass] = ps
	}
	return ps
}

// passFolded reports whether every range of a pass is done and its tasks are gone from memory
// (their records stay in KV).
func (j *job) passFolded(pass int) bool {
	n := len(j.plan.Ranges)
	return n > 0 && pass < j.firstOpen/n
}

// task is the in-memory task of a pass that is not folded.
func (j *job) task(pass, r int) *task { return &j.pass(pass).tasks[r] }

// positions is the number of tasks: every range of every read pass.
func (j *job) positions() int { return j.plan.Passes() * len(j.plan.Ranges) }

// validTask reports whether pass and r name a task of the plan.
func (j *job) validTask(pass, r int) bool {
	return pass >= 0 && pass < j.plan.Passes() && r >= 0 && r < len(j.plan.Ranges)
}

// at maps a global position (pass × ranges + index in the pass's order) to its task.
func (j *job) at(pos int) (pass, r int) {
	n := len(j.plan.Ranges)
	pass = pos / n
	return pass, j.pass(pass).order[pos%n]
}

// trainerPos is the trainer's global position: ranges it has consumed in all epochs.
func (j *job) trainerPos() int {
	if j.scored != nil {
		// A prediction job's window follows the ranges the scorers have written.
		return j.scored.pos
	}
	return j.rec.Trainer.Epoch*len(j.plan.Ranges) + j.rec.Trainer.Consumed
}

// candidate returns the most urgent leasable task inside the window: the lowest position
// from firstOpen, and its distance ahead of the trainer. ok is false when there is none. The
// window is the plan's, which the trainer sizes its memory by. A sweep's window is each of
// its variants' (sweepCandidate).
func (j *job) candidate(now time.Time) (pass, r, dist int, ok bool) {
	if j.sweep() {
		return j.sweepCandidate(now)
	}
	limit := min(j.positions(), j.trainerPos()+max(j.plan.Window, 1))
	for pos := j.firstOpen; pos < limit; pos++ {
		pass, r := j.at(pos)
		if j.leasable(pass, r, now) {
			return pass, r, pos - j.trainerPos(), true
		}
	}
	return 0, 0, 0, false
}

// leasable reports whether the task of a pass that is not folded may be granted: it is
// pending, or its lease expired.
func (j *job) leasable(pass, r int, now time.Time) bool {
	t := &j.task(pass, r).rec
	return t.State == taskPending || (t.State == taskLeased && now.After(t.ExpiresAt))
}

// advance moves firstOpen past the tasks that are done, and folds the passes it leaves.
func (j *job) advance() {
	for j.firstOpen < j.positions() {
		pass, r := j.at(j.firstOpen)
		if j.task(pass, r).rec.State != taskDone {
			break
		}
		j.firstOpen++
	}
	for pass, ps := range j.passes {
		if !j.passFolded(pass) {
			continue
		}
		for _, t := range ps.tasks {
			addTask(&j.folded, t.rec)
		}
		delete(j.passes, pass)
	}
}

// addTask counts a task's state and hand-overs into a summary.
func addTask(f *messages.FetchSummary, t taskRecord) {
	f.Expired += t.Expired
	f.Released += t.Released
	f.Grants += t.Grants
	f.Resumed += t.Resumed
	f.RowsRead += t.Rows
	switch t.State {
	case taskDone:
		f.Done++
	case taskLeased:
		f.Leased++
	}
}

// allRead reports whether every range of every read pass is done.
func (j *job) allRead() bool { return j.firstOpen >= j.positions() }

func (j *job) lease(pass, r int, t taskRecord) messages.Lease {
	return messages.Lease{
		Version:     messages.SchemaVersion,
		ID:          t.LeaseID,
		JobID:       j.rec.ID,
		Pass:        pass,
		Range:       j.plan.Ranges[r],
		NextPage:    t.NextPage,
		LastKey:     t.LastKey,
		LastKeyText: t.LastKeyText,
		Rows:        t.Rows,
		ExpiresAt:   t.ExpiresAt,
	}
}

// status is what GET /v1/jobs/{id} answers.
func (j *job) status(now time.Time) messages.JobStatus {
	st := messages.JobStatus{
		Version:    messages.SchemaVersion,
		ID:         j.rec.ID,
		State:      j.rec.State,
		Error:      j.rec.Error,
		Reason:     j.rec.Reason,
		Table:      j.rec.Table,
		CreatedAt:  j.rec.CreatedAt,
		UpdatedAt:  j.rec.UpdatedAt,
		Trainer:    j.rec.Trainer,
		Results:    append([]messages.EpochResult(nil), j.rec.Results...),
		ModelPath:  j.rec.ModelPath,
		StopReason: j.rec.StopReason,
		BestEpoch:  j.rec.BestEpoch,
	}
	if j.rec.BestModel {
		st.BestModelPath, st.BestModelID = messages.BestModelDir(j.rec.ID), messages.BestModelID(j.rec.ID)
	}
	p := j.plan
	if p == nil {
		return st
	}
	st.Epochs, st.Ranges, st.Rows, st.Replay = p.Spec.Epochs, len(p.Ranges), p.Expected.Rows+p.ExpectedValid.Rows, p.Replay
	st.WarmStart = p.WarmStart
	st.Fetch = j.folded
	for _, pass := range slices.Sorted(maps.Keys(j.passes)) {
		for r, t := range j.passes[pass].tasks {
			addTask(&st.Fetch, t.rec)
			if t.rec.State == taskLeased {
				st.Leases = append(st.Leases, messages.LeaseInfo{
					ID: t.rec.LeaseID, Pass: pass, Range: r, Worker: t.rec.Worker, NextPage: t.rec.NextPage,
					Rows: t.rec.Rows, ExpiresAt: t.rec.ExpiresAt, Grants: t.rec.Grants,
				})
			}
		}
	}
	st.Fetch.Pending = j.positions() - st.Fetch.Done - st.Fetch.Leased
	if j.prediction() {
		st.Kind, st.Prediction = p.Kind, j.predictionStatus()
	}
	if j.sweep() {
		st.Sweep = j.sweepStatus()
	}
	return st
}
