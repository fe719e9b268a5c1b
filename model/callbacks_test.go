package model

import (
	"math"
	"testing"
)

// kerasEarlyStopping is keras.callbacks.EarlyStopping (Keras 3) transcribed line by line,
// for the crafted sequences below: best starts as None, _is_improvement compares
// monitor_op(current - min_delta, reference) with min_delta negated for "min".
type kerasEarlyStopping struct {
	minDelta     float64
	patience     int
	baseline     *float64
	startFrom    int
	higher       bool
	restore      bool
	wait         int
	best         *float64
	bestEpoch    int
	bestWeights  int // the epoch whose weights were saved, -1 for none
	stoppedEpoch int
}

func (k *kerasEarlyStopping) isImprovement(v float64, ref *float64) bool {
	if ref == nil {
		return true
	}
	d := k.minDelta
	if !k.higher {
		d = -d
	}
	if k.higher {
		return v-d > *ref
	}
	return v-d < *ref
}

func (k *kerasEarlyStopping) onEpochEnd(epoch int, current float64) (stop bool) {
	if epoch < k.startFrom {
		return false
	}
	if k.restore && k.bestWeights < 0 {
		k.bestWeights, k.bestEpoch = epoch, epoch
	}
	k.wait++
	if k.isImprovement(current, k.best) {
		c := current
		k.best, k.bestEpoch = &c, epoch
		if k.restore {
			k.bestWeights = epoch
		}
		if k.baseline == nil || k.isImprovement(current, k.baseline) {
			k.wait = 0
		}
		return false
	}
	if k.wait >= k.patience && epoch > 0 {
		k.stoppedEpoch = epoch
		return true
	}
	return false
}

func TestEarlyStoppingFollowsKeras(t *testing.T) {
	bl := func(v float64) *float64 { return &v }
	tests := []struct {
		name      string
		cfg       EarlyStopping
		seq       []float64
		wantStop  int // epoch that stops, -1 for none
		wantBest  int
		wantSaved int // the epoch whose weights are restored, -1 for none
	}{
		{name: "patience 2 after a plateau", cfg: EarlyStopping{Monitor: "val_loss", Patience: 2, RestoreBestWeights: true},
			seq: []float64{1.0, 0.8, 0.7, 0.71, 0.72, 0.69}, wantStop: 4, wantBest: 2, wantSaved: 2},
		{name: "min_delta makes small gains not count", cfg: EarlyStopping{Monitor: "loss", Patience: 1, MinDelta: 0.05},
			seq: []float64{1.0, 0.97, 0.9, 0.89, 0.5}, wantStop: 1, wantBest: 0, wantSaved: -1},
		{name: "a negative min_delta counts as its magnitude", cfg: EarlyStopping{Monitor: "loss", Patience: 1, MinDelta: -0.05},
			seq: []float64{1.0, 0.97, 0.9, 0.89, 0.5}, wantStop: 1, wantBest: 0, wantSaved: -1},
		{name: "patience 0 stops at the first non-improvement", cfg: EarlyStopping{Monitor: "loss"},
			seq: []float64{3, 2, 1, 1, 0}, wantStop: 3, wantBest: 2, wantSaved: -1},
		{name: "the first epoch never stops", cfg: EarlyStopping{Monitor: "loss"},
			seq: []float64{math.NaN(), 1, 2}, wantStop: 1, wantBest: 0, wantSaved: -1},
		{name: "accuracy maximised in auto mode", cfg: EarlyStopping{Monitor: "val_accuracy", Patience: 1, RestoreBestWeights: true},
			seq: []float64{0.5, 0.7, 0.6, 0.8}, wantStop: 2, wantBest: 1, wantSaved: 1},
		{name: "max mode on a loss name", cfg: EarlyStopping{Monitor: "val_loss", Mode: "max", Patience: 0},
			seq: []float64{1, 2, 1.5}, wantStop: 2, wantBest: 1, wantSaved: -1},
		// Without the baseline the wait would be 1 at epoch 2; improvements never stop.
		{name: "a baseline not beaten keeps the wait running", cfg: EarlyStopping{Monitor: "loss", Patience: 3, Baseline: bl(0.5)},
			seq: []float64{1.0, 0.9, 0.95, 0.96}, wantStop: 2, wantBest: 1, wantSaved: -1},
		{name: "improvements short of the baseline never stop", cfg: EarlyStopping{Monitor: "loss", Patience: 1, Baseline: bl(0.5)},
			seq: []float64{1.0, 0.9, 0.8, 0.7, 0.6, 0.4}, wantStop: -1, wantBest: 5, wantSaved: -1},
		{name: "a baseline beaten resets the wait", cfg: EarlyStopping{Monitor: "loss", Patience: 2, Baseline: bl(0.95)},
			seq: []float64{1.0, 0.9, 0.8, 0.85, 0.86, 0.87}, wantStop: 4, wantBest: 2, wantSaved: -1},
		{name: "start_from_epoch skips the warm-up", cfg: EarlyStopping{Monitor: "loss", Patience: 1, StartFromEpoch: 3, RestoreBestWeights: true},
			seq: []float64{0.1, 0.2, 0.3, 0.9, 1.0, 1.1}, wantStop: 4, wantBest: 3, wantSaved: 3},
		{name: "improving to the end", cfg: EarlyStopping{Monitor: "loss", Patience: 1, RestoreBestWeights: true},
			seq: []float64{5, 4, 3, 2, 1}, wantStop: -1, wantBest: 4, wantSaved: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Check(); err != nil {
				t.Fatal(err)
			}
			higher, _ := MonitorMaximizes(tt.cfg.Monitor, tt.cfg.Mode)
			k := &kerasEarlyStopping{minDelta: math.Abs(tt.cfg.MinDelta), patience: tt.cfg.Patience, baseline: tt.cfg.Baseline,
				startFrom: tt.cfg.StartFromEpoch, higher: higher, restore: tt.cfg.RestoreBestWeights, bestWeights: -1, stoppedEpoch: -1}
			st := NewEarlyStoppingState()
			saved := -1
			stopped := -1
			for epoch, v := range tt.seq {
				save, stop := tt.cfg.EpochEnd(&st, epoch, v)
				if save {
					saved = epoch
				}
				kstop := k.onEpochEnd(epoch, v)
				if stop != kstop || st.Wait != k.wait {
					t.Fatalf("epoch %d (%v): stop %v wait %d, Keras stop %v wait %d", epoch, v, stop, st.Wait, kstop, k.wait)
				}
				if stop {
					stopped = epoch
					break
				}
			}
			if stopped != tt.wantStop || stopped != k.stoppedEpoch || st.StoppedEpoch != stopped {
				t.Errorf("stopped at %d (state %d), Keras at %d, want %d", stopped, st.StoppedEpoch, k.stoppedEpoch, tt.wantStop)
			}
			if st.BestEpoch != tt.wantBest || k.bestEpoch != tt.wantBest {
				t.Errorf("best epoch %d, Keras %d, want %d", st.BestEpoch, k.bestEpoch, tt.wantBest)
			}
			if saved != tt.wantSaved || saved != k.bestWeights {
				t.Errorf("weights restored from epoch %d, Keras %d, want %d", saved, k.bestWeights, tt.wantSaved)
			}
		})
	}
}

func TestEarlyStoppingCheck(t *testing.T) {
	if err := (EarlyStopping{Patience: -1}).Check(); err == nil {
		t.Error("negative patience accepted")
	}
	if err := (EarlyStopping{Mode: "sideways"}).Check(); err == nil {
		t.Error("unknown mode accepted")
	}
}

func TestModelCheckpointKeepsTheBest(t *testing.T) {
	tests := []struct {
		name string
		cfg  ModelCheckpoint
		seq  []float64
		want []bool
	}{
		{"val_loss minimised", ModelCheckpoint{Monitor: "val_loss"}, []float64{1, 0.5, 0.5, 0.7, 0.4}, []bool{true, true, false, false, true}},
		{"accuracy maximised", ModelCheckpoint{Monitor: "val_accuracy"}, []float64{0.5, 0.4, 0.6}, []bool{true, false, true}},
		{"a threshold to beat", ModelCheckpoint{Monitor: "loss", InitialValueThreshold: func() *float64 { v := 0.6; return &v }()},
			[]float64{1, 0.7, 0.5}, []bool{false, false, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := tt.cfg.NewState()
			for i, v := range tt.seq {
				if got := tt.cfg.EpochEnd(&st, i, v); got != tt.want[i] {
					t.Fatalf("epoch %d (%v): kept %v, want %v", i, v, got, tt.want[i])
				}
			}
		})
	}
}

// A crafted val_loss sequence against keras.callbacks.ReduceLROnPlateau worked by hand:
// factor 0.5, patience 2, cooldown 1, min_delta 0.01, min_lr 0.02.
func TestReduceLROnPlateauFollowsKeras(t *testing.T) {
	r := ReduceLROnPlateau{Monitor: "val_loss", Factor: 0.5, Patience: 2, MinDelta: 0.01, Cooldown: 1, MinLR: 0.02}
	st := r.NewState()
	lr := 0.1
	steps := []struct {
		v      float64
		wantLR float64
	}{
		{1.0, 0.1},   // best 1.0
		{0.995, 0.1}, // not better by min_delta: wait 1
		{0.99, 0.05}, // wait 2 = patience: halve, cooldown 1
		{0.99, 0.05}, // the cooldown ends (wait 0); not better: wait 1
		{0.98, 0.05}, // better (0.98 < 1.0 - 0.01): best 0.98
		{0.98, 0.05}, // wait 1
		{0.98, 0.025},
		{0.98, 0.025}, // the cooldown ends (wait 0), then wait 1
		{0.98, 0.02},  // wait 2: max(0.0125, min_lr)
		{0.98, 0.02},  // the cooldown ends, wait 1
		{0.98, 0.02},  // wait 2, but already at min_lr
	}
	for i, s := range steps {
		lr, _ = r.EpochEnd(&st, s.v, lr)
		if math.Abs(lr-s.wantLR) > 1e-9 {
			t.Fatalf("epoch %d (%v): lr %v, want %v (state %+v)", i, s.v, lr, s.wantLR, st)
		}
	}
}
