package coordinator

import (
	"fmt"
	"net/http"
	"time"

	"pgtrain/messages"
)

// rangeStates is where each key range of the trainer's current epoch stands. It only reads
// the job: a pass that no grant has looked at yet is not created, its ranges are planned.
func (j *job) rangeStates(now time.Time) messages.JobRanges {
	p := j.plan
	n := len(p.Ranges)
	epoch := min(j.rec.Trainer.Epoch, max(p.Spec.Epochs-1, 0))
	out := messages.JobRanges{
		Version: messages.SchemaVersion, JobID: j.rec.ID,
		Epoch: epoch, Pass: p.PassOf(epoch), Ranges: make([]messages.RangeState, n),
	}
	// The trainer reads the ranges in the epoch's order: the first Consumed are trained.
	consumed := 0
	switch {
	case j.rec.State == messages.JobDone || j.rec.Trainer.Epoch > epoch:
		consumed = n
	case j.rec.Trainer.Epoch == epoch:
		consumed = j.rec.Trainer.Consumed
	}
	trained := make([]bool, n)
	for i, r := range p.EpochOrder(epoch) {
		trained[r] = i < consumed
	}
	if j.sweep() && consumed < n {
		// Each variant reads in its own order: a range is trained when all have trained it.
		trained = j.sweepTrained(epoch)
	}
	ps, folded := j.passes[out.Pass], j.passFolded(out.Pass)
	for r, kr := range p.Ranges {
		rs := messages.RangeState{Index: r, State: messages.RangePlanned, Rows: kr.Rows, Validation: r >= p.TrainingRanges()}
		switch {
		case trained[r]:
			rs.State, rs.RowsRead = messages.RangeTrained, kr.Rows
		case folded:
			rs.State, rs.RowsRead = messages.RangeFetched, kr.Rows
		case ps != nil:
			t := ps.tasks[r].rec
			rs.RowsRead = t.Rows
			switch {
			case t.State == taskDone:
				rs.State = messages.RangeFetched
			case t.State == taskLeased && !now.After(t.ExpiresAt):
				rs.State, rs.Worker = messages.RangeLeased, t.Worker
			}
		}
		out.Ranges[r] = rs
	}
	return out
}

func (c *Coordinator) handleRanges(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	c.mu.Lock()
	j := c.jobs[id]
	var out messages.JobRanges
	if j != nil && j.plan != nil {
		out = j.rangeStates(c.now())
	}
	c.mu.Unlock()
	switch {
	case j == nil:
		c.writeError(w, r, &apiError{status: http.StatusNotFound, msg: fmt.Sprintf("no job %q", id)})
	case j.plan == nil: // set once at load, never changed
		c.writeError(w, r, &apiError{status: http.StatusNotFound, msg: fmt.Sprintf("job %s has no plan: %v", id, j.loadErr)})
	default:
		writeJSON(w, http.StatusOK, out)
	}
}
