package model

import (
	"errors"
	"fmt"
	"math"
	"strings"

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
	// InitialEpoch is the epoch to start from (a resumed run); epochs are numbered from 0.
	InitialEpoch int
	// OnEpochEnd, if set, is called after each epoch with its logs; an error stops training
	// and is returned.
	OnEpochEnd func(epoch int, logs map[string]float64) error
}

// EarlyStopping stops training when a monitored value stops improving (Keras's callback).
type EarlyStopping struct {
	Monitor  string  // default "val_loss"
	MinDelta float64 // the smallest change that counts as an improvement
	Patience int     // epochs without improvement before stopping
	// Mode is "min", "max" or "auto" (max for accuracy-like names, min otherwise).
	Mode string
	// Baseline, if set, must be beaten for the patience counter to reset.
	Baseline *float64
	// RestoreBestWeights restores the weights of the best epoch when training stops early.
	RestoreBestWeights bool
	// StartFromEpoch: epochs before this one are not monitored.
	StartFromEpoch int
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
	switch {
	case vx != nil && opts.ValidationSplit != 0:
		return nil, errors.New("fit: give validation data or validation_split, not both")
	case vx != nil:
		if err := m.checkXY(vx, vy, vrows, true); err != nil {
			return nil, fmt.Errorf("fit: validation data: %w", err)
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
	}
	var es *earlyStopper
	if opts.EarlyStopping != nil {
		var err error
		if es, err = newEarlyStopper(*opts.EarlyStopping, m); err != nil {
			return nil, fmt.Errorf("fit: %w", err)
		}
	}
	h := &History{History: map[string][]float64{}, StoppedEpoch: -1, BestEpoch: -1}
	var perm []int
	var bx, by []float32
	if opts.Shuffle {
		bx = make([]float32, opts.BatchSize*in)
		by = make([]float32, opts.BatchSize*ld)
	}
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
				for i := 0; i < n; i++ {
					r := perm[b0+i]
					copy(bx[i*in:(i+1)*in], x[r*in:(r+1)*in])
					copy(by[i*ld:(i+1)*ld], y[r*ld:(r+1)*ld])
				}
				xb, yb = bx[:n*in], by[:n*ld]
			} else {
				xb, yb = x[b0*in:(b0+n)*in], y[b0*ld:(b0+n)*ld]
			}
			loss, err := m.trainStep(xb, yb, n)
			if err != nil {
				return h, fmt.Errorf("fit: epoch %d, batch at row %d: %w", epoch, b0, err)
			}
			lossSum += loss * float64(n)
		}
		logs := m.results(lossSum / float64(rows))
		if vx != nil {
			// Validation starts a pass of its own: the epoch's metrics are in logs already.
			vl, err := m.evaluate(vx, vy, vrows)
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
			stop, err := es.epochEnd(epoch, logs)
			if err != nil {
				return h, fmt.Errorf("fit: %w", err)
			}
			h.BestEpoch = es.bestEpoch
			if stop {
				h.StoppedEpoch = epoch
				break
			}
		}
	}
	return h, nil
}

type earlyStopper struct {
	cfg         EarlyStopping
	m           *Sequential
	higher      bool
	best        float64
	bestEpoch   int
	bestWeights []Tensor
	wait        int
}

func newEarlyStopper(cfg EarlyStopping, m *Sequential) (*earlyStopper, error) {
	if cfg.Monitor == "" {
		cfg.Monitor = "val_loss"
	}
	if cfg.Patience < 0 {
		return nil, errors.New("early stopping: patience must not be negative")
	}
	e := &earlyStopper{cfg: cfg, m: m, bestEpoch: -1}
	switch cfg.Mode {
	case "min":
	case "max":
		e.higher = true
	case "", "auto":
		n := strings.TrimPrefix(cfg.Monitor, "val_")
		e.higher = strings.Contains(n, "acc") || n == "auc"
	default:
		return nil, fmt.Errorf("early stopping: unknown mode %q", cfg.Mode)
	}
	e.cfg.MinDelta = math.Abs(cfg.MinDelta)
	if e.higher {
		e.best = math.Inf(-1)
	} else {
		e.best = math.Inf(1)
	}
	return e, nil
}

// improves follows Keras: current − min_delta > reference (max) or current + min_delta <
// reference (min).
func (e *earlyStopper) improves(cur, ref float64) bool {
	if e.higher {
		return cur-e.cfg.MinDelta > ref
	}
	return cur+e.cfg.MinDelta < ref
}

func (e *earlyStopper) epochEnd(epoch int, logs map[string]float64) (bool, error) {
	cur, ok := logs[e.cfg.Monitor]
	if !ok {
		keys := make([]string, 0, len(logs))
		for k := range logs {
			keys = append(keys, k)
		}
		return false, fmt.Errorf("early stopping monitors %q, which is not among %v", e.cfg.Monitor, keys)
	}
	if epoch < e.cfg.StartFromEpoch {
		return false, nil
	}
	if e.cfg.RestoreBestWeights && e.bestWeights == nil {
		e.bestWeights = e.m.Weights()
	}
	e.wait++
	if e.improves(cur, e.best) {
		e.best = cur
		e.bestEpoch = epoch
		if e.cfg.RestoreBestWeights {
			e.bestWeights = e.m.Weights()
		}
		if e.cfg.Baseline == nil || e.improves(cur, *e.cfg.Baseline) {
			e.wait = 0
		}
		return false, nil
	}
	if e.wait >= e.cfg.Patience && epoch > 0 {
		if e.cfg.RestoreBestWeights && e.bestWeights != nil {
			if err := e.m.SetWeights(e.bestWeights); err != nil {
				return true, err
			}
		}
		return true, nil
	}
	return false, nil
}
