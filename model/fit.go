package model

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"

	"pgtrain/messages"
)

// FitOptions are Keras fit() arguments for in-memory arrays.
type FitOptions struct {
	Epochs    int // default 1
	BatchSize int // default 32, as Keras
	// Shuffle permutes the training rows before each epoch with the model's seeded generator.
	// Off by default (Keras shuffles by default; pgtrain's data arrive already shuffled).
	Shuffle bool
	// Validation data (rows×InputDim and rows×LabelDim), or ValidationSplit: the last
	// fraction of the rows, taken before any shuffling, as Keras does.
	ValidationX, ValidationY []float32
	ValidationRows           int
	ValidationSplit          float64
	EarlyStopping            *EarlyStopping
	// ClassWeight weighs each training row's loss by its class's weight (indexed by class),
	// as Keras's class_weight; validation is not weighted by it.
	ClassWeight []float64
	// SampleWeight weighs each row's loss (one per row, sample_weight.go), times its class
	// weight; ValidationSplit splits it with the rows and the validation loss is weighted by
	// it, as Keras does. ValidationSampleWeight weighs explicit validation data.
	SampleWeight, ValidationSampleWeight []float32
	// InitialEpoch is the epoch to start from (a resumed run); epochs are numbered from 0.
	InitialEpoch int
	// OnEpochEnd, if set, is called after each epoch with its logs; an error stops training
	// and is returned.
	OnEpochEnd func(epoch int, logs map[string]float64) error
}

// History is what fit returns: one value per epoch for each key ("loss", metrics, and
// "val_" versions with validation data).
type History struct {
	Epochs  []int
	History map[string][]float64
	// StoppedEpoch is the epoch at which early stopping ended training, -1 if it did not.
	StoppedEpoch int
	// BestEpoch is the epoch with the best monitored value under early stopping, -1 without.
	BestEpoch int
}

// Fit trains on in-memory arrays as Keras's fit does: batches in order (or shuffled with
// Shuffle), the last partial batch kept, the epoch loss Σ(batch loss × batch rows)/N with each
// batch loss taken before its update, validation after every epoch, early stopping.
func (m *Sequential) Fit(x, y []float32, rows int, opts FitOptions) (*History, error) {
	if !m.compiled {
		return nil, ErrNotCompiled
	}
	if opts.Epochs == 0 {
		opts.Epochs = 1
	}
	if opts.BatchSize == 0 {
		opts.BatchSize = 32
	}
	if opts.Epochs < 0 || opts.BatchSize < 0 {
		return nil, errors.New("fit: epochs and batch size must be positive")
	}
	if err := m.checkXY(x, y, rows, true); err != nil {
		return nil, fmt.Errorf("fit: %w", err)
	}
	in, ld := m.inputDim, m.LabelDim()
	vx, vy, vrows := opts.ValidationX, opts.ValidationY, opts.ValidationRows
	sws, vsw := opts.SampleWeight, opts.ValidationSampleWeight
	if err := checkSampleWeights(sws, rows); err != nil {
		return nil, fmt.Errorf("fit: sample_weight: %w", err)
	}
	switch {
	case vx != nil && opts.ValidationSplit != 0:
		return nil, errors.New("fit: give validation data or validation_split, not both")
	case vx != nil:
		if err := m.checkXY(vx, vy, vrows, true); err != nil {
			return nil, fmt.Errorf("fit: validation data: %w", err)
		}
		if err := checkSampleWeights(vsw, vrows); err != nil {
			return nil, fmt.Errorf("fit: validation sample weights: %w", err)
		}
	case opts.ValidationSplit != 0:
		if !(opts.ValidationSplit > 0 && opts.ValidationSplit < 1) {
			return nil, fmt.Errorf("fit: validation_split must be in (0, 1), got %v", opts.ValidationSplit)
		}
		split := int(math.Floor(float64(rows) * (1 - opts.ValidationSplit)))
		if split == 0 || split == rows {
			return nil, fmt.Errorf("fit: validation_split %v of %d rows leaves an empty set", opts.ValidationSplit, rows)
		}
		vx, vy, vrows = x[split*in:], y[split*ld:], rows-split
		x, y, rows = x[:split*in], y[:split*ld], split
		if sws != nil {
			vsw, sws = sws[split:], sws[:split]
		}
	}
	es := opts.EarlyStopping
	esState := NewEarlyStoppingState()
	var bestWeights []Tensor
	if es != nil {
		if err := es.Check(); err != nil {
			return nil, fmt.Errorf("fit: %w", err)
		}
	}
	h := &History{History: map[string][]float64{}, StoppedEpoch: -1, BestEpoch: -1}
	var perm []int
	var bx, by, sw []float32
	if opts.Shuffle {
		bx = make([]float32, opts.BatchSize*in)
		by = make([]float32, opts.BatchSize*ld)
	}
	weighted := sws != nil || opts.ClassWeight != nil
	for epoch := opts.InitialEpoch; epoch < opts.Epochs; epoch++ {
		if opts.Shuffle {
			perm = messages.Permutation(rows, m.shuffleRNG.IntN)
		}
		m.metrics.Reset()
		var lossSum float64
		for b0 := 0; b0 < rows; b0 += opts.BatchSize {
			n := min(opts.BatchSize, rows-b0)
			var xb, yb []float32
			if opts.Shuffle {
				sw = sw[:0]
				for i := 0; i < n; i++ {
					r := perm[b0+i]
					copy(bx[i*in:(i+1)*in], x[r*in:(r+1)*in])
					copy(by[i*ld:(i+1)*ld], y[r*ld:(r+1)*ld])
					if sws != nil {
						sw = append(sw, sws[r])
					}
				}
				xb, yb = bx[:n*in], by[:n*ld]
			} else {
				xb, yb = x[b0*in:(b0+n)*in], y[b0*ld:(b0+n)*ld]
				if sws != nil {
					sw = append(sw[:0], sws[b0:b0+n]...)
				}
			}
			var loss float64
			var err error
			var w []float32
			if weighted {
				w = sw
				if opts.ClassWeight != nil {
					sw, err = ClassWeights(yb, n, ld, opts.ClassWeight, sw, sws != nil)
					w = sw
				}
			}
			if err == nil {
				loss, err = m.trainStep(xb, yb, w, n)
			}
			if err != nil {
				return h, fmt.Errorf("fit: epoch %d, batch at row %d: %w", epoch, b0, err)
			}
			lossSum += loss * float64(n)
		}
		logs := m.results(lossSum / float64(rows))
		if vx != nil {
			// Validation starts a pass of its own: the epoch's metrics are in logs already.
			vl, err := m.evaluate(vx, vy, vsw, vrows)
			if err != nil {
				return h, fmt.Errorf("fit: validation: %w", err)
			}
			for k, v := range m.results(vl) {
				logs["val_"+k] = v
			}
		}
		h.Epochs = append(h.Epochs, epoch)
		for k, v := range logs {
			h.History[k] = append(h.History[k], v)
		}
		if opts.OnEpochEnd != nil {
			if err := opts.OnEpochEnd(epoch, logs); err != nil {
				return h, err
			}
		}
		if es != nil {
			cur, ok := logs[es.monitor()]
			if !ok {
				return h, fmt.Errorf("fit: early stopping monitors %q, which is not among %v", es.monitor(), slices.Sorted(maps.Keys(logs)))
			}
			save, stop := es.EpochEnd(&esState, epoch, cur)
			if save {
				bestWeights = m.Weights()
			}
			h.BestEpoch = esState.BestEpoch
			if stop {
				h.StoppedEpoch = epoch
				break
			}
		}
	}
	if bestWeights != nil {
		// Keras 3 restores the best weights when training ends, early or not.
		if err := m.SetWeights(bestWeights); err != nil {
			return h, fmt.Errorf("fit: restoring the best weights: %w", err)
		}
	}
	return h, nil
}
