package trainer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"pgtrain/internal/faultpoint"
	"pgtrain/internal/workloop"
	"pgtrain/messages"
	"pgtrain/model"
)

// errStopped: the context was cancelled and the position is checkpointed.
var errStopped = errors.New("stopped")

// jobRun is one job being trained: the plan, the model and the position.
type jobRun struct {
	t     *Trainer
	plan  *messages.Plan
	dir   string
	model Model
	pos   position
	log   *slog.Logger
	ctl   controls
	// weights is the buffer of the pending batch's sample weights (sample_weight_column
	// times class_weight).
	weights []float32

	segment time.Time // start of the wall time not yet added to pos.Seconds

	// saving, when not nil, delivers the outcome of the range whose checkpoint, purge and
	// report are still under way (rangeDone).
	saving chan error

	// The last position reported and when, for the heartbeat.
	beat struct {
		sync.Mutex
		last messages.TrainerProgress
		sent time.Time
	}
}

// run trains from j.pos to the end, then exports the model.
func (j *jobRun) run(parent context.Context) error {
	if err := j.resumeReport(parent); err != nil {
		return err
	}
	if !j.pos.Finished {
		ctx, cancel := context.WithCancelCause(parent)
		var wg sync.WaitGroup
		wg.Go(func() { j.heartbeat(ctx, cancel) })
		err := j.epochs(ctx)
		cancel(nil)
		wg.Wait()
		if parent.Err() != nil {
			return parent.Err()
		}
		if cause := context.Cause(ctx); errors.Is(cause, ErrJobGone) {
			return cause
		}
		if errors.Is(err, errStopped) {
			return retryable("training stopped without a cause: %w", err)
		}
		if err != nil {
			return err
		}
	}
	return j.finish(parent)
}

// heartbeat repeats the last report when the trainer has been silent for a while (waiting
// for data, or training on a long range): the coordinator hands the job of a silent trainer
// to another one. When the coordinator says the job is gone, it stops the training through
// stop.
func (j *jobRun) heartbeat(ctx context.Context, stop context.CancelCauseFunc) {
	every := j.t.cfg.Heartbeat
	tick := time.NewTicker(every / 2)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		j.beat.Lock()
		p, due := j.beat.last, time.Since(j.beat.sent) >= every
		j.beat.Unlock()
		if !due {
			continue
		}
		err := j.send(ctx, p)
		switch {
		case err == nil, ctx.Err() != nil:
		case jobGone(err):
			stop(fmt.Errorf("%w: %w", ErrJobGone, err))
			return
		default:
			j.log.Warn("heartbeat to the coordinator", "error", err)
		}
	}
}

// resumeReport tells the coordinator where the trainer starts, so that the lease window is
// right even if the last report before a crash was lost; at an epoch boundary it repeats
// that epoch's result for the same reason.
func (j *jobRun) resumeReport(ctx context.Context) error {
	p := messages.TrainerProgress{Epoch: j.pos.Epoch, Consumed: j.pos.Consumed, Rows: j.pos.Seen.Rows + j.pos.SeenValid.Rows}
	if j.pos.Consumed == 0 && j.pos.Offset == 0 && len(j.pos.Results) > 0 {
		last := j.pos.Results[len(j.pos.Results)-1]
		p.Epoch, p.Consumed, p.Rows, p.Result = last.Epoch, len(j.plan.Ranges), last.Seen.Rows+last.SeenValid.Rows, &last
	}
	return j.report(ctx, p)
}

func (j *jobRun) epochs(ctx context.Context) (err error) {
	pctx, cancel := context.WithCancel(ctx)
	rr := newReadyReader(j.t.bus.ReadyStream(), j.t.names, j.plan, j.t.cfg.ReadAhead, j.t.cfg.ReadBackoff, j.log)
	pf := startPrefetch(pctx, rr, j.plan, j.pos.Epoch, j.pos.Consumed, j.t.cfg.Prefetch+1)
	defer func() {
		cancel()
		pf.wait()
		// The last range's checkpoint lands (or fails) before the job attempt ends.
		if serr := j.awaitSave(); serr != nil && (err == nil || errors.Is(err, errStopped)) {
			err = serr
		}
	}()
	j.segment = time.Now()
	for {
		r, ok, err := pf.next(ctx)
		if ctx.Err() != nil {
			// Nothing was trained since the last checkpoint.
			return errStopped
		}
		if err != nil {
			return fmt.Errorf("epoch %d: %w", j.pos.Epoch+1, err)
		}
		if !ok {
			return nil
		}
		if r.Epoch != j.pos.Epoch || r.Pos != j.pos.Consumed {
			return fmt.Errorf("reader at epoch %d position %d, trainer at %d/%d", r.Epoch, r.Pos, j.pos.Epoch, j.pos.Consumed)
		}
		err = j.rangeDone(ctx, r)
		pf.release(r)
		if err != nil {
			return err
		}
		if j.pos.Finished {
			return nil // early stopping ended the training before the plan's last epoch
		}
	}
}

// rangeDone feeds one range to the model and then records that it is done: checkpoint,
// purge, report, in that order, so a crash between any two steps loses nothing.
func (j *jobRun) rangeDone(ctx context.Context, r *rangeRows) error {
	train := j.plan.TrainingRanges()
	order := len(j.plan.Ranges)
	stopped, err := j.feed(ctx, r, r.Pos < train)
	if err != nil {
		return err
	}
	if stopped {
		if err := j.checkpoint(); err != nil {
			return err
		}
		j.log.Info("stopped mid-range, checkpoint written", "epoch", j.pos.Epoch+1, "range", r.Range, "offset", j.pos.Offset)
		return errStopped
	}
	if r.Pos == train-1 && len(j.pos.Pending.Keys) > 0 {
		if err := j.step(true); err != nil { // the epoch's one partial training batch
			return err
		}
	}
	if r.Pos == order-1 && len(j.pos.Pending.Keys) > 0 {
		if err := j.step(false); err != nil {
			return err
		}
	}
	j.pos.Consumed++
	j.pos.Offset = 0
	progress := messages.TrainerProgress{Epoch: j.pos.Epoch, Consumed: j.pos.Consumed, Rows: j.pos.Seen.Rows + j.pos.SeenValid.Rows}
	if r.Pos == order-1 {
		res, err := j.endEpoch()
		if err != nil {
			return err
		}
		progress.Result = &res
		return j.afterCheckpoint(ctx, r.Pass, r.Range, progress)
	}
	// Within an epoch the checkpoint's bytes are taken now, and written, purged and
	// reported while the model trains on the next range: the file's sync and the report's
	// round trip cost as much as training a range on a fast model. They stay in order,
	// one range at a time, and any other checkpoint waits for them (checkpoint).
	j.addTime()
	data, err := encodeCheckpoint(j.plan.JobID, &j.pos, j.model)
	if err != nil {
		return err
	}
	if err := j.awaitSave(); err != nil {
		return err
	}
	done := make(chan error, 1)
	j.saving = done
	pass, rng := r.Pass, r.Range // r goes back to the reader once fed
	go func() {
		if err := writeCheckpoint(j.dir, data); err != nil {
			done <- err
			return
		}
		done <- j.afterCheckpoint(ctx, pass, rng, progress)
	}()
	return nil
}

// afterCheckpoint purges the range's READY batches (when they are not replayed) and reports
// the progress, once the checkpoint that holds the range is on disk.
func (j *jobRun) afterCheckpoint(ctx context.Context, pass, rng int, progress messages.TrainerProgress) error {
	faultpoint.Hit(faultpoint.TrainerAfterCheckpoint)
	if !j.plan.Replay {
		j.purge(ctx, j.t.names.ReadyRangeSubjects(j.plan.JobID, pass, rng))
	}
	if err := j.report(ctx, progress); err != nil {
		if ctx.Err() != nil {
			return errStopped
		}
		return err
	}
	return nil
}

// awaitSave waits for the range being saved, if any, and returns its error.
func (j *jobRun) awaitSave() error {
	if j.saving == nil {
		return nil
	}
	err := <-j.saving
	j.saving = nil
	return err
}

// feed appends the range's rows (shuffled for training, in key order for validation) to the
// pending batch, running a step each time it is full. On cancel it stops after the step in
// hand and records how far into the range it got.
func (j *jobRun) feed(ctx context.Context, r *rangeRows, training bool) (stopped bool, err error) {
	n := r.rows()
	if j.pos.Offset > n {
		return false, fmt.Errorf("checkpoint offset %d in range %d of %d rows: %w", j.pos.Offset, r.Range, n, ErrBadCheckpoint)
	}
	var perm []int
	if training {
		perm = shuffle(j.plan.Spec.Seed, j.plan.ModelEpoch(r.Epoch), r.Range, n)
	}
	in, lab := j.plan.InputDim, j.plan.LabelDim
	bs := j.plan.Spec.BatchSize
	p := &j.pos.Pending
	if cap(p.Keys) < bs {
		p.Keys = slices.Grow(p.Keys, bs-len(p.Keys))
		p.X = slices.Grow(p.X, (bs-len(p.Keys))*in)
		p.Y = slices.Grow(p.Y, (bs-len(p.Keys))*lab)
	}
	seen := &j.pos.SeenValid
	if training {
		seen = &j.pos.Seen
	}
	for i := j.pos.Offset; i < n; i++ {
		row := i
		if training {
			row = perm[i]
		}
		key := r.Keys[row]
		p.Keys = append(p.Keys, key)
		p.X = append(p.X, r.X[row*in:(row+1)*in]...)
		p.Y = append(p.Y, r.Y[row*lab:(row+1)*lab]...)
		if r.W != nil {
			p.W = append(p.W, r.W[row])
		}
		seen.Add(key)
		if !j.pos.AnyKey || key > j.pos.LastKey {
			j.pos.LastKey, j.pos.AnyKey = key, true
		}
		if len(p.Keys) < bs {
			continue
		}
		if err := j.step(training); err != nil {
			return false, err
		}
		if d := j.t.cfg.StepDelay; d > 0 {
			workloop.Sleep(ctx, d)
		}
		if ctx.Err() != nil && i+1 < n {
			j.pos.Offset = i + 1
			return true, nil
		}
	}
	return false, nil
}

// step trains on (or evaluates) the pending rows as one batch.
func (j *jobRun) step(training bool) error {
	p := &j.pos.Pending
	rows := len(p.Keys)
	if j.t.observe != nil {
		j.t.observe(j.pos.Epoch, training, p.Keys)
	}
	var out map[string]float64
	var err error
	acc := &j.pos.Valid
	split := splitValidation
	w, err := j.sampleWeightsOf(p, training)
	switch {
	case err != nil:
	case training && w != nil:
		out, err = j.model.(weightedTrainer).TrainOnBatchWeighted(p.X, p.Y, w, rows)
		acc, split = &j.pos.Train, splitTrain
	case training:
		out, err = j.model.TrainOnBatch(p.X, p.Y, rows)
		acc, split = &j.pos.Train, splitTrain
	case w != nil:
		out, err = j.model.(weightedTrainer).EvaluateWeighted(p.X, p.Y, w, rows)
	default:
		out, err = j.model.Evaluate(p.X, p.Y, rows)
	}
	if err != nil {
		return fmt.Errorf("epoch %d, batch of %d rows (first key %d): %w", j.pos.Epoch+1, rows, p.Keys[0], err)
	}
	acc.add(out, rows)
	j.t.m.rows.WithLabelValues(j.plan.JobID, split).Add(float64(rows))
	p.Keys, p.X, p.Y, p.W = p.Keys[:0], p.X[:0], p.Y[:0], p.W[:0]
	return nil
}

// endEpoch closes the epoch: the result, the exactly-once check, the history, the log line,
// and the checkpoint that moves the position to the next epoch.
func (j *jobRun) endEpoch() (messages.EpochResult, error) {
	j.addTime()
	e := j.pos.Epoch
	res := messages.EpochResult{
		Epoch:     e,
		Seen:      j.pos.Seen,
		SeenValid: j.pos.SeenValid,
		Seconds:   j.pos.Seconds,
	}
	res.Loss, res.Metrics = j.pos.Train.means()
	if j.plan.ValidationRanges > 0 {
		vl, vm := j.pos.Valid.means()
		res.ValLoss, res.ValMetrics = &vl, vm
	}
	if res.Seconds > 0 {
		res.RowsPerSecond = float64(res.Seen.Rows) / res.Seconds
	}
	if err := j.checkSeen(e, "training", res.Seen, j.plan.Expected); err != nil {
		return res, err
	}
	if err := j.checkSeen(e, "validation", res.SeenValid, j.plan.ExpectedValid); err != nil {
		return res, err
	}
	stop, err := j.onEpochEnd(&res)
	if err != nil {
		return res, err
	}
	j.pos.Results = append(j.pos.Results, res)
	j.pos = position{Epoch: e + 1, Pending: j.pos.Pending, Results: j.pos.Results, Finished: stop || e+1 >= j.plan.Spec.Epochs,
		LastKey: j.pos.LastKey, AnyKey: j.pos.AnyKey, Callbacks: j.pos.Callbacks}
	if err := j.checkpoint(); err != nil {
		return res, err
	}
	if err := writeHistory(j.dir, j.pos.Results); err != nil {
		return res, err
	}
	j.logEpoch(res)
	j.t.m.epoch(j.plan.JobID, res)
	return res, nil
}

func (j *jobRun) checkSeen(epoch int, what string, seen, want messages.KeyChecksum) error {
	if seen == want {
		return nil
	}
	args := []any{"epoch", epoch + 1, "ranges", what,
		"seen_rows", seen.Rows, "seen_sum", seen.Sum, "seen_sum_sq", seen.SumSq,
		"expected_rows", want.Rows, "expected_sum", want.Sum, "expected_sum_sq", want.SumSq}
	if j.t.cfg.AllowDrift {
		j.log.Warn("key checksum differs from the plan (allowed: the table is live)", args...)
		return nil
	}
	j.log.Error("key checksum differs from the plan", args...)
	return fmt.Errorf("epoch %d %s rows: saw %+v, the plan expects %+v: %w", epoch+1, what, seen, want, ErrChecksumMismatch)
}

func (j *jobRun) logEpoch(res messages.EpochResult) {
	args := []any{"loss", res.Loss}
	for _, k := range sortedKeys(res.Metrics) {
		args = append(args, k, res.Metrics[k])
	}
	if res.ValLoss != nil {
		args = append(args, "val_loss", *res.ValLoss)
		for _, k := range sortedKeys(res.ValMetrics) {
			args = append(args, "val_"+k, res.ValMetrics[k])
		}
	}
	if res.LearningRate > 0 {
		args = append(args, "learning_rate", res.LearningRate)
	}
	if res.Best {
		args = append(args, "best", true)
	}
	args = append(args, "rows", res.Seen.Rows, "seconds", res.Seconds, "rows_per_s", res.RowsPerSecond)
	j.log.Info(fmt.Sprintf("epoch %d/%d", res.Epoch+1, j.plan.Spec.Epochs), args...)
	if s := j.pos.Callbacks.Stopped; s != "" && j.pos.Finished {
		j.log.Info(s)
	}
}

func (j *jobRun) addTime() {
	now := time.Now()
	if !j.segment.IsZero() {
		j.pos.Seconds += now.Sub(j.segment).Seconds()
	}
	j.segment = now
}

func (j *jobRun) checkpoint() error {
	if err := j.awaitSave(); err != nil {
		return err
	}
	j.addTime()
	return saveCheckpoint(j.dir, j.plan.JobID, &j.pos, j.model)
}

// purge drops READY batches nobody will read again. A failure only costs space until the
// job's final purge, so it is logged, not returned.
func (j *jobRun) purge(ctx context.Context, subject string) {
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalTimeout)
	defer cancel()
	if err := j.t.bus.ReadyStream().Purge(pctx, jetstream.WithPurgeSubject(subject)); err != nil {
		j.log.Warn("purging consumed batches", "subject", subject, "error", err)
	}
}

// report sends progress; a report that fails after the coordinator's own retries ends the
// job attempt (to be resumed from the checkpoint), since a lost report would stall the
// lease window.
func (j *jobRun) report(ctx context.Context, p messages.TrainerProgress) error {
	p.Version = messages.SchemaVersion
	p.TrainerID = j.t.cfg.TrainerID
	if v := j.plan.Variant; v != nil {
		p.Variant = &v.Index
	}
	var rctx context.Context
	var cancel context.CancelFunc
	if ctx.Err() == nil {
		rctx, cancel = context.WithCancel(ctx)
	} else {
		// The last report of a shutdown still goes out, but only for so long.
		rctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), finalTimeout)
	}
	defer cancel()
	err := j.send(rctx, p)
	switch {
	case err == nil:
		return nil
	case jobGone(err):
		return fmt.Errorf("%w: %w", ErrJobGone, err)
	default:
		return retryable("reporting progress (epoch %d, consumed %d): %w", p.Epoch+1, p.Consumed, err)
	}
}

// send reports p and remembers it for the heartbeat.
func (j *jobRun) send(ctx context.Context, p messages.TrainerProgress) error {
	if err := j.t.coord.ReportTrainer(ctx, j.plan.JobID, p); err != nil {
		return err
	}
	p.Result = nil // an epoch's result is sent once; the heartbeat repeats only the position
	j.beat.Lock()
	j.beat.last, j.beat.sent = p, time.Now()
	j.beat.Unlock()
	return nil
}

// finish exports the model, stores it in the bus's model bucket and reports the job done.
// It runs again, harmlessly, when a trainer restarts after the last checkpoint: the export
// and the stored objects come out the same.
func (j *jobRun) finish(ctx context.Context) error {
	if es := j.pos.Callbacks.Early; j.ctl.early != nil && j.ctl.early.RestoreBestWeights && es != nil && es.HasBestWeights {
		// Keras 3 restores the best weights when training ends, early or not.
		if err := j.loadWeights(earlyStoppingWeights); err != nil {
			return err
		}
		j.log.Info("restored the weights of the best epoch", "epoch", es.BestEpoch+1)
	}
	dir, err := j.export("model", j.meta(-1))
	if err != nil {
		return err
	}
	if err := j.t.bus.PutModel(ctx, j.modelID(), dir); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return retryable("storing the model: %w", err)
	}
	best := j.bestEpoch()
	if j.ctl.best != nil && best != nil {
		if err := j.loadWeights(bestEpochWeights); err != nil {
			return err
		}
		bdir, err := j.export("model-best", j.meta(*best))
		if err != nil {
			return err
		}
		if err := j.t.bus.PutModel(ctx, messages.BestModelID(j.modelID()), bdir); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return retryable("storing the best epoch's model: %w", err)
		}
	}
	var rows int64
	if n := len(j.pos.Results); n > 0 {
		rows = j.pos.Results[n-1].Seen.Rows
	}
	err = j.report(ctx, messages.TrainerProgress{
		Epoch: j.plan.Spec.Epochs, Consumed: 0, Rows: rows, Done: true,
		Stopped: j.pos.Callbacks.Stopped, BestEpoch: best,
	})
	if err != nil {
		return err
	}
	if j.plan.Variant == nil {
		// (A sweep's batches stay for its other variants: the coordinator purges them.)
		j.purge(ctx, j.t.names.ReadyJobSubjects(j.plan.JobID))
	}
	j.log.Info("job done", "model_path", dir, "epochs", len(j.pos.Results))
	return nil
}

// modelID is the model store's name of the model: the job's, or its sweep variant's.
func (j *jobRun) modelID() string {
	if v := j.plan.Variant; v != nil {
		return messages.VariantModelID(j.plan.JobID, v.Index)
	}
	return j.plan.JobID
}

// export writes the TF.js model, with its metadata, next to the checkpoint in the directory
// name; it is written under a temporary name and renamed, so OutDir/<job>/<name> is either
// absent or complete.
func (j *jobRun) export(name string, meta messages.ModelMeta) (string, error) {
	final, err := filepath.Abs(filepath.Join(j.dir, name))
	if err != nil {
		return "", err
	}
	tmp := final + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return "", fmt.Errorf("exporting the model: %w", err)
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", fmt.Errorf("exporting the model: %w", err)
	}
	if err := j.model.SaveTFJS(tmp); err != nil {
		return "", fmt.Errorf("exporting the model: %w", err)
	}
	// The training state goes with the model, so that a job can continue it (init_from).
	state, err := j.model.MarshalCheckpoint()
	if err != nil {
		return "", fmt.Errorf("exporting the training state: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(tmp, messages.TrainingStateFile), state); err != nil {
		return "", fmt.Errorf("exporting the training state: %w", err)
	}
	if err := model.WriteMeta(tmp, meta); err != nil {
		return "", fmt.Errorf("exporting the model: %w", err)
	}
	if err := os.RemoveAll(final); err != nil {
		return "", fmt.Errorf("exporting the model: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", fmt.Errorf("exporting the model: %w", err)
	}
	return final, nil
}

// meta is the model's metadata: the plan's preprocessing and data, the largest key read (a
// typed key's is the plan's) and the metrics of the given epoch (-1: the final epoch).
func (j *jobRun) meta(epoch int) messages.ModelMeta {
	m := messages.ModelMetaFromPlan(j.plan)
	if j.plan.KeyColumns == nil {
		m.LastKey = j.pos.LastKey
	}
	m.Epochs = j.plan.ModelEpoch(len(j.pos.Results))
	m.TrainingState = messages.TrainingStateFile
	if n := len(j.pos.Results); n > 0 {
		res := j.pos.Results[n-1]
		for _, r := range j.pos.Results {
			if r.Epoch == epoch {
				res = r
			}
		}
		m.Metrics = map[string]float64{"loss": res.Loss}
		for k, v := range res.Metrics {
			m.Metrics[k] = v
		}
		if res.ValLoss != nil {
			m.Metrics["val_loss"] = *res.ValLoss
		}
		for k, v := range res.ValMetrics {
			m.Metrics["val_"+k] = v
		}
	}
	return m
}

// shuffle is the permutation of a training range's rows in an epoch, drawn by a generator
// that depends only on (seed, epoch, range index).
func shuffle(seed int64, epoch, rangeIndex, n int) []int {
	return messages.Permutation(n, messages.NewRand(seed, uint64(epoch), uint64(rangeIndex)).IntN)
}

// writeHistory writes every finished epoch's result as JSON, for people and notebooks.
func writeHistory(jobDir string, results []messages.EpochResult) error {
	b, err := json.MarshalIndent(results, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(jobDir, "history.json"), append(b, '\n')); err != nil {
		return fmt.Errorf("writing history.json: %w", err)
	}
	return nil
}

func sortedKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
