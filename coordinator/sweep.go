package coordinator

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"slices"
	"time"

	"pgtrain/messages"
	"pgtrain/model"
)

// A sweep job trains one model per variant of its spec's sweep on one read of the data: each
// variant is claimed by a trainer of its own and reports with its index. Its plan replays
// READY (the data is read from PostgreSQL once, and stays in READY until the job ends), so
// a variant that waits for a free trainer reads the same batches later. Each variant reads
// the ranges in its own seed's order, as it would alone, so the lease window is each
// variant's (sweepCandidate). The job is done when every variant is. A variant that fails
// fails the job (its data is every variant's data).

// Variant states.
const (
	variantRunning = "running"
	variantDone    = "done"
)

// variantRecord is one sweep variant's part of the job record.
type variantRecord struct {
	State      string                 `json:"state"`
	Trainer    messages.TrainerState  `json:"trainer"`
	Results    []messages.EpochResult `json:"results,omitempty"`
	StopReason string                 `json:"stop_reason,omitempty"`
	BestEpoch  *int                   `json:"best_epoch,omitempty"`
	BestModel  bool                   `json:"best_model,omitempty"`
}

func (j *job) sweep() bool { return len(j.rec.Variants) > 0 }

// checkVariants builds every variant's model on the plan's input width and label, as the
// job's own model was, naming the variant's field at fault.
func checkVariants(p *messages.Plan, ms *model.Spec, l model.SizeLimits) error {
	for i, v := range p.Spec.Sweep {
		vms, err := ms.WithVariant(v)
		if err != nil {
			var fe model.FieldError
			if errors.As(err, &fe) {
				return &messages.FieldError{Field: messages.SweepField(i, fe.Field), Reason: fe.Reason}
			}
			return messages.InVariant(i, err)
		}
		field := messages.SweepField(i, "units")
		if err := vms.CheckSize(p.InputDim, l); err != nil {
			return &messages.FieldError{Field: field, Reason: err.Error()}
		}
		if err := checkModel(p.ForVariant(i), vms); err != nil {
			var fe *messages.FieldError
			if errors.As(err, &fe) && fe.Field == "model" && v.Units != nil {
				// The sizes are what changed: the last one must fit the label.
				return &messages.FieldError{Field: field, Reason: fe.Reason}
			}
			return messages.InVariant(i, err)
		}
	}
	return nil
}

// checkSweepReplay refuses a sweep whose data does not fit READY: its variants would need the
// batches after the trainers of the others have read them.
func checkSweepReplay(p *messages.Plan, readyMaxBytes int64) error {
	if len(p.Spec.Sweep) == 0 || p.Replay {
		return nil
	}
	return &apiError{status: http.StatusUnprocessableEntity, field: "sweep",
		msg: fmt.Sprintf("a sweep reads the data once and every variant replays it from READY, which cannot hold this job's %d rows (--ready-max-bytes %d): raise it, or filter the rows (where)",
			p.Expected.Rows+p.ExpectedValid.Rows, readyMaxBytes)}
}

// newVariants is a new sweep job's variant records (nil for a job without a sweep).
func newVariants(p *messages.Plan) []variantRecord {
	if len(p.Spec.Sweep) == 0 {
		return nil
	}
	vs := make([]variantRecord, len(p.Spec.Sweep))
	for i := range vs {
		vs[i].State = variantRunning
	}
	return vs
}

// ownVariant is the running variant trainerID trains, or -1.
func (j *job) ownVariant(trainerID string) int {
	for i, v := range j.rec.Variants {
		if v.State == variantRunning && v.Trainer.ID == trainerID {
			return i
		}
	}
	return -1
}

// freeVariant is the first running variant with no live trainer, or -1.
func (j *job) freeVariant(now time.Time, silent time.Duration) int {
	for i, v := range j.rec.Variants {
		if v.State == variantRunning && (v.Trainer.ID == "" || now.Sub(v.Trainer.SeenAt) > silent) {
			return i
		}
	}
	return -1
}

// claimVariant gives variant i of j to trainerID. Callers hold c.mu.
func (c *Coordinator) claimVariant(ctx context.Context, j *job, i int, trainerID string) (messages.ClaimResponse, error) {
	now := c.now()
	rec := j.rec
	rec.Variants = slices.Clone(j.rec.Variants)
	v := &rec.Variants[i]
	if v.Trainer.ID != "" && v.Trainer.ID != trainerID {
		c.log.Info("trainer silent; sweep variant handed to another trainer", "job_id", rec.ID, "variant", i,
			"old_trainer", v.Trainer.ID, "new_trainer", trainerID, "last_seen", v.Trainer.SeenAt)
	}
	v.Trainer.ID, v.Trainer.SeenAt = trainerID, now
	rec.UpdatedAt = now
	if err := c.writeJob(ctx, j, rec); err != nil {
		return messages.ClaimResponse{}, err
	}
	c.log.Info("sweep variant claimed by trainer", "job_id", rec.ID, "variant", i, "trainer", trainerID)
	return messages.ClaimResponse{JobID: rec.ID, Variant: &i}, nil
}

// checkVariantTrainer refuses a report about a variant from a trainer that has not claimed
// it (or lost it).
func (j *job) checkVariantTrainer(variant *int, id string) (int, error) {
	if variant == nil {
		return 0, &apiError{status: http.StatusBadRequest, field: "variant",
			msg: fmt.Sprintf("job %s is a sweep of %d variants: name the variant the trainer trains", j.rec.ID, len(j.rec.Variants))}
	}
	i := *variant
	if i < 0 || i >= len(j.rec.Variants) {
		return 0, &apiError{status: http.StatusBadRequest, field: "variant",
			msg: fmt.Sprintf("variant %d: job %s has variants 0 to %d", i, j.rec.ID, len(j.rec.Variants)-1)}
	}
	switch t := j.rec.Variants[i].Trainer.ID; t {
	case id:
		return i, nil
	case "":
		return i, &apiError{status: http.StatusConflict, msg: fmt.Sprintf("variant %d of job %s is not claimed by %s: claim it first", i, j.rec.ID, id)}
	default:
		return i, &apiError{status: http.StatusConflict, msg: fmt.Sprintf("variant %d of job %s is trained by %s now", i, j.rec.ID, t)}
	}
}

// variantProgress records a variant's position and results; its Done ends the variant, and
// the last one's the job; its Error fails the job. Callers hold c.mu; j is running.
func (c *Coordinator) variantProgress(ctx context.Context, j *job, p messages.TrainerProgress) error {
	i, err := j.checkVariantTrainer(p.Variant, p.TrainerID)
	if err != nil {
		return err
	}
	if j.rec.Variants[i].State == variantDone {
		if p.Done {
			return nil // a retried final report
		}
		return &apiError{status: http.StatusConflict, msg: fmt.Sprintf("variant %d of job %s is done", i, j.rec.ID), jobState: messages.JobDone}
	}
	n := len(j.plan.Ranges)
	if p.Epoch < 0 || p.Epoch > j.plan.Spec.Epochs || p.Consumed < 0 || p.Consumed > n {
		return &apiError{status: http.StatusBadRequest, msg: fmt.Sprintf("position epoch %d, consumed %d is outside the plan's %d epochs of %d ranges",
			p.Epoch, p.Consumed, j.plan.Spec.Epochs, n)}
	}
	now := c.now()
	rec := j.rec
	rec.Variants = slices.Clone(j.rec.Variants)
	v := &rec.Variants[i]
	v.Results = slices.Clone(v.Results)
	v.Trainer.SeenAt = now
	if p.Epoch*n+p.Consumed >= v.Trainer.Epoch*n+v.Trainer.Consumed {
		v.Trainer.Epoch, v.Trainer.Consumed, v.Trainer.Rows = p.Epoch, p.Consumed, p.Rows
	}
	v.Results = addResult(v.Results, p.Result)
	switch {
	case p.Error != "":
		rec.State, rec.Error = messages.JobFailed, fmt.Sprintf("trainer of variant %d: %s", i, p.Error)
	case p.Done:
		v.State, v.StopReason, v.BestEpoch = variantDone, p.Stopped, p.BestEpoch
		v.BestModel = j.plan.Spec.ModelCheckpoint != nil && p.BestEpoch != nil
	}
	rec.Trainer = slowestVariant(rec.Variants, n)
	rec.Trainer.SeenAt = now
	if allVariantsDone(rec.Variants) {
		rec.State = messages.JobDone
		if best := bestVariant(j.plan.Spec, rec.Variants); best >= 0 {
			rec.ModelPath = messages.VariantModelDir(rec.ID, best)
		}
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

// addResult adds an epoch's result once; a later best epoch takes the mark from an earlier.
func addResult(results []messages.EpochResult, r *messages.EpochResult) []messages.EpochResult {
	if r == nil || slices.ContainsFunc(results, func(e messages.EpochResult) bool { return e.Epoch == r.Epoch }) {
		return results
	}
	if r.Best {
		for i := range results {
			results[i].Best = false
		}
	}
	results = append(results, *r)
	slices.SortFunc(results, func(a, b messages.EpochResult) int { return a.Epoch - b.Epoch })
	return results
}

// slowestVariant is the position of the running variant with a trainer furthest behind: the
// job's position in its status. (A variant waiting for a trainer reads the replayed batches
// when it gets one.)
func slowestVariant(vs []variantRecord, ranges int) messages.TrainerState {
	var slow *messages.TrainerState
	for i := range vs {
		t := &vs[i].Trainer
		if vs[i].State != variantRunning || t.ID == "" {
			continue
		}
		if slow == nil || t.Epoch*ranges+t.Consumed < slow.Epoch*ranges+slow.Consumed {
			slow = t
		}
	}
	if slow == nil {
		return messages.TrainerState{}
	}
	return messages.TrainerState{Epoch: slow.Epoch, Consumed: slow.Consumed, Rows: slow.Rows}
}

// windowVariants are the variants whose windows a sweep leases in: the running ones with a
// trainer (a silent one's too, until another takes it over), or while none has one, the
// first running variant, which the next trainer claims.
func (j *job) windowVariants() []int {
	var out []int
	first := -1
	for i, v := range j.rec.Variants {
		if v.State != variantRunning {
			continue
		}
		if first < 0 {
			first = i
		}
		if v.Trainer.ID != "" {
			out = append(out, i)
		}
	}
	if len(out) == 0 && first >= 0 {
		out = append(out, first)
	}
	return out
}

// sweepCandidate is candidate for a sweep, whose variants read the ranges in different
// orders. One window in one order could deadlock: a variant would wait for a range outside
// it while the window waits for that variant to move. So a range may be leased when it lies
// inside the window of any of the windowVariants, each counted in the variant's own order:
// the ranges before its position plus the plan's window. The range a trainer waits for is
// then always leasable, whatever the others do and however few trainers there are. Fetchers
// work ahead of the fastest variant, which takes no memory the sweep does not take anyway:
// READY holds its whole table until it ends. The read pass still has one task per range, so
// every row is read from PostgreSQL once. dist is the range's distance ahead of the variant
// that needs it soonest (negative when it is behind one).
func (j *job) sweepCandidate(now time.Time) (pass, r, dist int, ok bool) {
	n := len(j.plan.Ranges)
	if n == 0 || j.allRead() {
		j.orders = nil
		return 0, 0, 0, false
	}
	// An order is kept while a variant may still read it.
	maps.DeleteFunc(j.orders, func(k variantEpoch, _ []int) bool {
		return k.epoch < j.rec.Variants[k.variant].Trainer.Epoch
	})
	w := max(j.plan.Window, 1)
	for _, i := range j.windowVariants() {
		t := j.rec.Variants[i].Trainer
		from := t.Epoch*n + t.Consumed
		lo, hi := t.Epoch*n, min(j.plan.Spec.Epochs*n, from+w)
		if j.plan.Replay {
			// Every epoch replays pass 0, and epoch 0's order holds every range.
			lo, hi = 0, min(n, from+w)
		}
		for q := lo; q < hi && (!ok || q-from < dist); q++ {
			e := q / n
			vp := j.plan.PassOf(e)
			if j.passFolded(vp) {
				continue
			}
			if vr := j.variantOrder(i, e)[q%n]; j.leasable(vp, vr, now) {
				pass, r, dist, ok = vp, vr, q-from, true
				break
			}
		}
	}
	return pass, r, dist, ok
}

// variantEpoch names one variant's range order of one epoch.
type variantEpoch struct{ variant, epoch int }

// variantOrder is the order in which variant i's trainer reads the ranges in epoch e.
func (j *job) variantOrder(i, e int) []int {
	k := variantEpoch{i, e}
	o, ok := j.orders[k]
	if !ok {
		if j.orders == nil {
			j.orders = map[variantEpoch][]int{}
		}
		o = j.plan.ForVariant(i).EpochOrder(e)
		j.orders[k] = o
	}
	return o
}

// sweepTrained marks the ranges of epoch that every variant has trained, each in its own
// order: those done, and those with a trainer (the variants slowestVariant weighs).
func (j *job) sweepTrained(epoch int) []bool {
	n := len(j.plan.Ranges)
	trained := make([]bool, n)
	var variants []int
	for i, v := range j.rec.Variants {
		if v.State == variantRunning && v.Trainer.ID != "" {
			variants = append(variants, i)
		}
	}
	if len(variants) == 0 {
		return trained
	}
	for r := range trained {
		trained[r] = true
	}
	for _, i := range variants {
		t := j.rec.Variants[i].Trainer
		if t.Epoch > epoch {
			continue
		}
		for pos, r := range j.plan.ForVariant(i).EpochOrder(epoch) {
			trained[r] = trained[r] && t.Epoch == epoch && pos < t.Consumed
		}
	}
	return trained
}

func allVariantsDone(vs []variantRecord) bool {
	for _, v := range vs {
		if v.State != variantDone {
			return false
		}
	}
	return true
}

// variantValue is the sweep monitor's value at a variant's last epoch.
func variantValue(monitor string, v variantRecord) (float64, bool) {
	if len(v.Results) == 0 {
		return 0, false
	}
	x, ok := v.Results[len(v.Results)-1].MonitorValue(monitor)
	return x, ok && !math.IsNaN(x)
}

// bestVariant is the done variant whose last epoch has the best monitored value (the
// lowest index on a tie), or -1 when none has a value.
func bestVariant(s messages.JobSpec, vs []variantRecord) int {
	maximize, err := model.MonitorMaximizes(s.SweepMonitor, s.SweepMode)
	if err != nil {
		return -1
	}
	best, bestValue := -1, 0.0
	for i, v := range vs {
		x, ok := variantValue(s.SweepMonitor, v)
		if v.State != variantDone || !ok {
			continue
		}
		if best < 0 || (maximize && x > bestValue) || (!maximize && x < bestValue) {
			best, bestValue = i, x
		}
	}
	return best
}

// sweepStatus is the sweep part of a job's status.
func (j *job) sweepStatus() *messages.SweepStatus {
	s := j.plan.Spec
	st := &messages.SweepStatus{Monitor: s.SweepMonitor, Mode: s.SweepMode}
	if maximize, err := model.MonitorMaximizes(s.SweepMonitor, s.SweepMode); err == nil {
		st.Mode = messages.SweepModeMin
		if maximize {
			st.Mode = messages.SweepModeMax
		}
	}
	best := -1
	if j.rec.State == messages.JobDone {
		best = bestVariant(s, j.rec.Variants)
	}
	if best >= 0 {
		st.Best = &best
	}
	for i, v := range j.rec.Variants {
		vs := messages.VariantStatus{
			Index: i, State: v.State, Trainer: v.Trainer, Results: slices.Clone(v.Results),
			StopReason: v.StopReason, BestEpoch: v.BestEpoch, Best: i == best,
		}
		if i < len(s.Sweep) {
			vs.Overrides = s.Sweep[i]
		}
		if x, ok := variantValue(s.SweepMonitor, v); ok {
			vs.Value = &x
		}
		if v.State == variantDone {
			vs.ModelPath, vs.ModelID = messages.VariantModelDir(j.rec.ID, i), messages.VariantModelID(j.rec.ID, i)
			if v.BestModel {
				vs.BestModelPath, vs.BestModelID = messages.VariantBestModelDir(j.rec.ID, i), messages.BestModelID(vs.ModelID)
			}
		}
		st.Variants = append(st.Variants, vs)
	}
	return st
}
