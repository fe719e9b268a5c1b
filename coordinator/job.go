package coordinator

import (
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
	plan *messages.Plan
	// orders[pass] is the range order of that read pass, which is the trainer's order.
	orders [][]int
	tasks  [][]task // [pass][range]
	// firstOpen is the lowest global position whose task is not done; grants scan from it.
	firstOpen int
	snap      *snapshot
}

func (j *job) init(p *messages.Plan) {
	j.plan = p
	passes := p.Passes()
	j.orders = make([][]int, passes)
	j.tasks = make([][]task, passes)
	for pass := range passes {
		j.orders[pass] = p.EpochOrder(pass)
		j.tasks[pass] = make([]task, len(p.Ranges))
		for r := range j.tasks[pass] {
			j.tasks[pass][r].rec.State = taskPending
		}
	}
}

// positions is the number of tasks: every range of every read pass.
func (j *job) positions() int { return len(j.tasks) * len(j.plan.Ranges) }

// at maps a global position (pass × ranges + index in the pass's order) to its task.
func (j *job) at(pos int) (pass, r int) {
	n := len(j.plan.Ranges)
	pass = pos / n
	return pass, j.orders[pass][pos%n]
}

// trainerPos is the trainer's global position: ranges it has consumed in all epochs.
func (j *job) trainerPos() int {
	return j.rec.Trainer.Epoch*len(j.plan.Ranges) + j.rec.Trainer.Consumed
}

// candidate returns the lowest leasable position inside the trainer's window, or -1. The
// window is the plan's, which the trainer sizes its memory by.
func (j *job) candidate(now time.Time) int {
	limit := min(j.positions(), j.trainerPos()+max(j.plan.Window, 1))
	for pos := j.firstOpen; pos < limit; pos++ {
		pass, r := j.at(pos)
		t := &j.tasks[pass][r].rec
		if t.State == taskPending || (t.State == taskLeased && now.After(t.ExpiresAt)) {
			return pos
		}
	}
	return -1
}

// advance moves firstOpen past the tasks that are done.
func (j *job) advance() {
	for j.firstOpen < j.positions() {
		pass, r := j.at(j.firstOpen)
		if j.tasks[pass][r].rec.State != taskDone {
			return
		}
		j.firstOpen++
	}
}

// allRead reports whether every range of every read pass is done.
func (j *job) allRead() bool { return j.firstOpen >= j.positions() }

func (j *job) lease(pass, r int) messages.Lease {
	t := j.tasks[pass][r].rec
	return messages.Lease{
		Version:   messages.SchemaVersion,
		ID:        t.LeaseID,
		JobID:     j.rec.ID,
		Pass:      pass,
		Range:     j.plan.Ranges[r],
		NextPage:  t.NextPage,
		LastKey:   t.LastKey,
		Rows:      t.Rows,
		ExpiresAt: t.ExpiresAt,
	}
}

// status is what GET /v1/jobs/{id} answers.
func (j *job) status(now time.Time) messages.JobStatus {
	p := j.plan
	st := messages.JobStatus{
		Version:   messages.SchemaVersion,
		ID:        j.rec.ID,
		State:     j.rec.State,
		Error:     j.rec.Error,
		Table:     j.rec.Table,
		CreatedAt: j.rec.CreatedAt,
		UpdatedAt: j.rec.UpdatedAt,
		Epochs:    p.Spec.Epochs,
		Ranges:    len(p.Ranges),
		Rows:      p.Expected.Rows + p.ExpectedValid.Rows,
		Replay:    p.Replay,
		Trainer:   j.rec.Trainer,
		Results:   append([]messages.EpochResult(nil), j.rec.Results...),
		ModelPath: j.rec.ModelPath,
	}
	for pass := range j.tasks {
		for r := range j.tasks[pass] {
			t := &j.tasks[pass][r].rec
			st.Fetch.Expired += t.Expired
			st.Fetch.Released += t.Released
			st.Fetch.Grants += t.Grants
			st.Fetch.Resumed += t.Resumed
			st.Fetch.RowsRead += t.Rows
			switch t.State {
			case taskDone:
				st.Fetch.Done++
			case taskLeased:
				st.Fetch.Leased++
				st.Leases = append(st.Leases, messages.LeaseInfo{
					ID: t.LeaseID, Pass: pass, Range: r, Worker: t.Worker, NextPage: t.NextPage,
					Rows: t.Rows, ExpiresAt: t.ExpiresAt, Grants: t.Grants,
				})
			default:
				st.Fetch.Pending++
			}
		}
	}
	return st
}
