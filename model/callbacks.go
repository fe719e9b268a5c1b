package model

import (
	"fmt"
	"math"
	"strings"
)

// Keras's EarlyStopping, ModelCheckpoint(save_best_only=True) and ReduceLROnPlateau rules,
// as pure functions of a callback's settings, its state and the epoch's monitored value: the
// state is plain data, so a trainer can checkpoint it and resume with the same decisions.

// MonitorMaximizes resolves a callback's mode: "max", "min", or "auto", which is max for an
// accuracy (Keras's metrics whose direction is up) and min for the loss and the errors.
func MonitorMaximizes(monitor, mode string) (bool, error) {
	switch mode {
	case "min":
		return false, nil
	case "max":
		return true, nil
	case "", "auto":
		return strings.Contains(strings.TrimPrefix(monitor, "val_"), "acc"), nil
	}
	return false, fmt.Errorf("unknown mode %q (want auto, min or max)", mode)
}

// EarlyStopping stops training when a monitored value stops improving (Keras's callback).
type EarlyStopping struct {
	Monitor  string  // default "val_loss"
	MinDelta float64 // the smallest change that counts as an improvement
	Patience int     // epochs without improvement before stopping
	// Mode is "min", "max" or "auto".
	Mode string
	// Baseline, if set, must be beaten for the patience counter to reset.
	Baseline *float64
	// RestoreBestWeights: when training ends (early or not), the weights of the best epoch
	// are restored, as Keras 3 does.
	RestoreBestWeights bool
	// StartFromEpoch: epochs before this one are not monitored.
	StartFromEpoch int
}

// EarlyStoppingState is what EarlyStopping remembers between epochs.
type EarlyStoppingState struct {
	Wait      int     `msgpack:"wait"`
	Best      float64 `msgpack:"best"`
	HasBest   bool    `msgpack:"has_best"`
	BestEpoch int     `msgpack:"best_epoch"`
	// HasBestWeights: weights were saved (RestoreBestWeights), those of BestEpoch.
	HasBestWeights bool `msgpack:"has_best_weights"`
	// StoppedEpoch is the epoch that stopped training, -1 before.
	StoppedEpoch int `msgpack:"stopped_epoch"`
}

// NewEarlyStoppingState is the state before the first epoch.
func NewEarlyStoppingState() EarlyStoppingState {
	return EarlyStoppingState{BestEpoch: -1, StoppedEpoch: -1}
}

// Check refuses settings Keras refuses.
func (e EarlyStopping) Check() error {
	if e.Patience < 0 {
		return fmt.Errorf("early stopping: patience must not be negative")
	}
	if _, err := MonitorMaximizes(e.monitor(), e.Mode); err != nil {
		return fmt.Errorf("early stopping: %w", err)
	}
	return nil
}

func (e EarlyStopping) monitor() string {
	if e.Monitor == "" {
		return "val_loss"
	}
	return e.Monitor
}

// improves is Keras's _is_improvement: monitor_op(current - min_delta, reference), min_delta
// negated for a minimised value; no reference yet is an improvement.
func (e EarlyStopping) improves(higher bool, cur float64, ref float64, hasRef bool) bool {
	if !hasRef {
		return true
	}
	d := math.Abs(e.MinDelta)
	if higher {
		return cur-d > ref
	}
	return cur+d < ref
}

// EpochEnd applies Keras's on_epoch_end to the epoch's monitored value: saveWeights says the
// weights at the end of this epoch become the best weights (only with RestoreBestWeights),
// stop that training ends after this epoch.
func (e EarlyStopping) EpochEnd(s *EarlyStoppingState, epoch int, current float64) (saveWeights, stop bool) {
	higher, _ := MonitorMaximizes(e.monitor(), e.Mode)
	if epoch < e.StartFromEpoch {
		return false, false
	}
	if e.RestoreBestWeights && !s.HasBestWeights {
		// If best weights were never set, the current weights are the best.
		saveWeights, s.HasBestWeights, s.BestEpoch = true, true, epoch
	}
	s.Wait++
	if e.improves(higher, current, s.Best, s.HasBest) {
		s.Best, s.HasBest, s.BestEpoch = current, true, epoch
		if e.RestoreBestWeights {
			saveWeights = true
		}
		// Only restart the wait if the baseline is beaten too.
		if e.Baseline == nil || e.improves(higher, current, *e.Baseline, true) {
			s.Wait = 0
		}
		return saveWeights, false
	}
	if s.Wait >= e.Patience && epoch > 0 {
		s.StoppedEpoch = epoch
		return saveWeights, true
	}
	return saveWeights, false
}

// ModelCheckpoint keeps the weights of the epoch with the best monitored value (Keras's
// ModelCheckpoint with save_best_only=True).
type ModelCheckpoint struct {
	Monitor string
	Mode    string
	// InitialValueThreshold, if set, is the value to beat before a first epoch is kept.
	InitialValueThreshold *float64
}

// ModelCheckpointState is what ModelCheckpoint remembers between epochs.
type ModelCheckpointState struct {
	Best      float64 `msgpack:"best"`
	BestEpoch int     `msgpack:"best_epoch"`
}

// NewState is the state before the first epoch: Keras starts from ±inf or the threshold.
func (c ModelCheckpoint) NewState() ModelCheckpointState {
	higher, _ := MonitorMaximizes(c.Monitor, c.Mode)
	s := ModelCheckpointState{Best: math.Inf(1), BestEpoch: -1}
	if higher {
		s.Best = math.Inf(-1)
	}
	if c.InitialValueThreshold != nil {
		s.Best = *c.InitialValueThreshold
	}
	return s
}

// EpochEnd reports whether this epoch's weights are the new best.
func (c ModelCheckpoint) EpochEnd(s *ModelCheckpointState, epoch int, current float64) bool {
	higher, _ := MonitorMaximizes(c.Monitor, c.Mode)
	if (higher && current > s.Best) || (!higher && current < s.Best) {
		s.Best, s.BestEpoch = current, epoch
		return true
	}
	return false
}

// ReduceLROnPlateau multiplies the learning rate by Factor once the monitored value has not
// improved by MinDelta for Patience epochs, then waits Cooldown epochs (Keras's callback).
type ReduceLROnPlateau struct {
	Monitor  string
	Factor   float64
	Patience int
	Mode     string
	MinDelta float64
	Cooldown int
	MinLR    float64
}

// ReduceLROnPlateauState is what ReduceLROnPlateau remembers between epochs.
type ReduceLROnPlateauState struct {
	Best     float64 `msgpack:"best"`
	Wait     int     `msgpack:"wait"`
	Cooldown int     `msgpack:"cooldown"`
}

// NewState is the state before the first epoch.
func (r ReduceLROnPlateau) NewState() ReduceLROnPlateauState {
	if r.maximizes() {
		return ReduceLROnPlateauState{Best: math.Inf(-1)}
	}
	return ReduceLROnPlateauState{Best: math.Inf(1)}
}

// maximizes follows ReduceLROnPlateau's own auto rule: max only when "acc" is in the name.
func (r ReduceLROnPlateau) maximizes() bool {
	return r.Mode == "max" || ((r.Mode == "" || r.Mode == "auto") && strings.Contains(r.Monitor, "acc"))
}

// EpochEnd applies Keras's on_epoch_end given the optimizer's current rate lr; it returns
// the new rate and whether it changed.
func (r ReduceLROnPlateau) EpochEnd(s *ReduceLROnPlateauState, current, lr float64) (float64, bool) {
	if s.Cooldown > 0 {
		s.Cooldown--
		s.Wait = 0
	}
	better := current < s.Best-r.MinDelta
	if r.maximizes() {
		better = current > s.Best+r.MinDelta
	}
	if better {
		s.Best, s.Wait = current, 0
		return lr, false
	}
	if s.Cooldown > 0 {
		return lr, false
	}
	s.Wait++
	if s.Wait < r.Patience {
		return lr, false
	}
	// Keras reads the rate back from a float32 variable before comparing and scaling it.
	old := float64(float32(lr))
	if !(old > float64(float32(r.MinLR))) {
		return lr, false
	}
	s.Cooldown, s.Wait = r.Cooldown, 0
	return math.Max(old*r.Factor, r.MinLR), true
}
