package trainer

import (
	"fmt"
	"os"
	"path/filepath"

	"pgtrain/messages"
	"pgtrain/model"
)

// The job's training controls: Keras's EarlyStopping, ModelCheckpoint(save_best_only) and
// ReduceLROnPlateau callbacks run at the end of each epoch on its logs, and class weights
// on each training batch. Their state lives in the position, and the weights they keep in
// files beside the checkpoint, so a resumed job decides exactly as one never stopped.

// Files beside the checkpoint holding a model checkpoint of a kept epoch.
const (
	earlyStoppingWeights = "early_stopping.weights" // restore_best_weights
	bestEpochWeights     = "best_epoch.weights"     // model_checkpoint
)

// callbackState is the callbacks' memory between epochs.
type callbackState struct {
	Early   *model.EarlyStoppingState     `msgpack:"early,omitempty"`
	Best    *model.ModelCheckpointState   `msgpack:"best,omitempty"`
	Plateau *model.ReduceLROnPlateauState `msgpack:"plateau,omitempty"`
	// LearningRate is the rate ReduceLROnPlateau set last (0: never), applied again on resume.
	LearningRate float64 `msgpack:"learning_rate,omitempty"`
	// Stopped says why early stopping ended training.
	Stopped string `msgpack:"stopped,omitempty"`
}

// controls are the spec's callbacks in the engine's terms.
type controls struct {
	early   *model.EarlyStopping
	best    *model.ModelCheckpoint
	plateau *model.ReduceLROnPlateau
	// classWeights is one weight per class index, nil without class_weight.
	classWeights []float64
	// sampleWeights is set with a sample weight column.
	sampleWeights bool
}

func controlsOf(p *messages.Plan) controls {
	s := p.Spec
	var c controls
	if e := s.EarlyStopping; e != nil {
		c.early = &model.EarlyStopping{Monitor: e.Monitor, MinDelta: e.MinDelta, Patience: e.Patience, Mode: e.Mode,
			Baseline: e.Baseline, RestoreBestWeights: e.RestoreBestWeights, StartFromEpoch: e.StartFromEpoch}
	}
	if m := s.ModelCheckpoint; m != nil {
		c.best = &model.ModelCheckpoint{Monitor: m.Monitor, Mode: m.Mode, InitialValueThreshold: m.InitialValueThreshold}
	}
	if r := s.ReduceLROnPlateau; r != nil {
		c.plateau = &model.ReduceLROnPlateau{Monitor: r.Monitor, Factor: r.Factor, Mode: r.Mode, Cooldown: r.Cooldown, MinLR: r.MinLR,
			Patience: messages.DefaultReduceLRPatience, MinDelta: messages.DefaultReduceLRMinDelta}
		if r.Patience != nil {
			c.plateau.Patience = *r.Patience
		}
		if r.MinDelta != nil {
			c.plateau.MinDelta = *r.MinDelta
		}
	}
	c.classWeights = p.ClassWeights
	c.sampleWeights = p.WeightDim() > 0
	return c
}

// newCallbackState is the state before the first epoch.
func (c controls) newState() callbackState {
	var s callbackState
	if c.early != nil {
		e := model.NewEarlyStoppingState()
		s.Early = &e
	}
	if c.best != nil {
		b := c.best.NewState()
		s.Best = &b
	}
	if c.plateau != nil {
		p := c.plateau.NewState()
		s.Plateau = &p
	}
	return s
}

// weightedTrainer is an engine that takes sample weights (class_weight,
// sample_weight_column).
type weightedTrainer interface {
	TrainOnBatchWeighted(x, y, w []float32, rows int) (map[string]float64, error)
	EvaluateWeighted(x, y, w []float32, rows int) (map[string]float64, error)
}

// learningRater is an engine whose learning rate a callback can read and set.
type learningRater interface {
	LearningRate() float64
	SetLearningRate(lr float64) error
}

// checkEngine refuses a job whose controls the engine cannot run.
func (c controls) checkEngine(m Model) error {
	if _, ok := m.(weightedTrainer); c.classWeights != nil && !ok {
		return fmt.Errorf("class_weight: this backend does not take sample weights: %w", ErrBadPlan)
	}
	if _, ok := m.(weightedTrainer); c.sampleWeights && !ok {
		return fmt.Errorf("sample_weight_column: this backend does not take sample weights: %w", ErrBadPlan)
	}
	if _, ok := m.(learningRater); c.plateau != nil && !ok {
		return fmt.Errorf("reduce_lr_on_plateau: this backend cannot change its learning rate: %w", ErrBadPlan)
	}
	return nil
}

// epochLogs are the epoch's values under Keras's log names.
func epochLogs(res messages.EpochResult) map[string]float64 {
	logs := map[string]float64{"loss": res.Loss}
	for k, v := range res.Metrics {
		logs[k] = v
	}
	if res.ValLoss != nil {
		logs["val_loss"] = *res.ValLoss
	}
	for k, v := range res.ValMetrics {
		logs["val_"+k] = v
	}
	return logs
}

// onEpochEnd runs the callbacks, in Keras's order of a callbacks list [ModelCheckpoint,
// ReduceLROnPlateau, EarlyStopping], on a finished epoch's result: it keeps weights, sets
// the learning rate, marks res as the best epoch, and reports whether training stops.
func (j *jobRun) onEpochEnd(res *messages.EpochResult) (stop bool, err error) {
	c, st := j.ctl, &j.pos.Callbacks
	if lr, ok := j.model.(learningRater); ok && (c.plateau != nil || j.plan.Spec.Optimizer.Schedule != nil) {
		// Logged, as Keras logs it, when it moves.
		res.LearningRate = lr.LearningRate()
	}
	logs := epochLogs(*res)
	value := func(monitor string) (float64, bool) {
		v, ok := logs[monitor]
		if !ok {
			// Keras warns and skips the callback; the spec check makes this rare (a
			// validation split too small to hold out a range).
			j.log.Warn("a callback's monitored value is missing from the epoch's logs; skipped", "monitor", monitor, "epoch", res.Epoch+1)
		}
		return v, ok
	}
	if c.best != nil {
		if v, ok := value(c.best.Monitor); ok && c.best.EpochEnd(st.Best, res.Epoch, v) {
			if err := j.keepWeights(bestEpochWeights); err != nil {
				return false, err
			}
			res.Best = true
		}
	}
	if c.plateau != nil {
		if v, ok := value(c.plateau.Monitor); ok {
			lr := j.model.(learningRater)
			if next, changed := c.plateau.EpochEnd(st.Plateau, v, lr.LearningRate()); changed {
				if err := lr.SetLearningRate(next); err != nil {
					return false, fmt.Errorf("reduce_lr_on_plateau: %w", err)
				}
				st.LearningRate = next
				j.log.Info("reduce_lr_on_plateau: learning rate reduced", "epoch", res.Epoch+1, "learning_rate", next)
			}
		}
	}
	if c.early != nil {
		if v, ok := value(c.early.Monitor); ok {
			save, halt := c.early.EpochEnd(st.Early, res.Epoch, v)
			if save {
				if err := j.keepWeights(earlyStoppingWeights); err != nil {
					return false, err
				}
			}
			if c.best == nil && st.Early.BestEpoch == res.Epoch {
				res.Best = true
			}
			if halt && res.Epoch+1 < j.plan.Spec.Epochs {
				st.Stopped = fmt.Sprintf("early stopping at epoch %d of %d: %s did not improve for %d epochs (best %.6g at epoch %d)",
					res.Epoch+1, j.plan.Spec.Epochs, c.early.Monitor, st.Early.Wait, st.Early.Best, st.Early.BestEpoch+1)
				stop = true
			}
		}
	}
	if res.Best {
		for i := range j.pos.Results {
			j.pos.Results[i].Best = false
		}
	}
	return stop, nil
}

// bestEpoch is the epoch the job reports as best: model_checkpoint's, else early stopping's.
func (j *jobRun) bestEpoch() *int {
	st := j.pos.Callbacks
	var e int
	switch {
	case st.Best != nil:
		e = st.Best.BestEpoch
	case st.Early != nil:
		e = st.Early.BestEpoch
	default:
		return nil
	}
	if e < 0 {
		return nil
	}
	return &e
}

// keepWeights writes the model's checkpoint to name beside the job's checkpoint; it is
// written before the position that refers to it.
func (j *jobRun) keepWeights(name string) error {
	b, err := j.model.MarshalCheckpoint()
	if err != nil {
		return fmt.Errorf("keeping the epoch's weights: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(j.dir, name), b); err != nil {
		return fmt.Errorf("keeping the epoch's weights: %w", err)
	}
	return nil
}

// loadWeights sets the model to the weights kept in name.
func (j *jobRun) loadWeights(name string) error {
	b, err := os.ReadFile(filepath.Join(j.dir, name))
	if err != nil {
		return fmt.Errorf("reading the kept weights: %w", err)
	}
	if err := j.model.UnmarshalCheckpoint(b); err != nil {
		return fmt.Errorf("restoring the kept weights of %s: %w", name, err)
	}
	return nil
}

// resumeControls applies what the callbacks changed in the model (the learning rate) after
// the model was restored from a checkpoint.
func (j *jobRun) resumeControls() error {
	st, fresh := &j.pos.Callbacks, j.ctl.newState()
	if st.Early == nil {
		st.Early = fresh.Early
	}
	if st.Best == nil {
		st.Best = fresh.Best
	}
	if st.Plateau == nil {
		st.Plateau = fresh.Plateau
	}
	if lr := j.pos.Callbacks.LearningRate; lr > 0 {
		if err := j.model.(learningRater).SetLearningRate(lr); err != nil {
			return fmt.Errorf("reduce_lr_on_plateau: restoring the learning rate: %w", err)
		}
	}
	return nil
}

// sampleWeightsOf is the weight of each pending row, nil for none: its sample weight times,
// for training, its class's weight, as Keras multiplies them; validation rows take their
// sample weights only (Keras does not weigh validation by class).
func (j *jobRun) sampleWeightsOf(p *pendingRows, training bool) ([]float32, error) {
	rows := len(p.Keys)
	weighted := j.ctl.sampleWeights
	if weighted && len(p.W) != rows {
		return nil, fmt.Errorf("%d sample weights for %d rows: %w", len(p.W), rows, ErrBadCheckpoint)
	}
	if !training || j.ctl.classWeights == nil {
		if weighted {
			return p.W, nil
		}
		return nil, nil
	}
	w := append(j.weights[:0], p.W...)
	w, err := model.ClassWeights(p.Y, rows, j.plan.LabelDim, j.ctl.classWeights, w, weighted)
	if err != nil {
		return nil, fmt.Errorf("class_weight: %w", err)
	}
	j.weights = w
	return w, nil
}
