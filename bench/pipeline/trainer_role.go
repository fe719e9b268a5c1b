package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"pgtrain/coordinator/client"
	"pgtrain/internal/bus"
	"pgtrain/messages"
	"pgtrain/model"
	"pgtrain/trainer"
)

// Model kinds of the end-to-end runs.
const (
	modelNoop = "noop" // steps return at once: what the pipeline alone delivers
	modelMLP  = "mlp"  // dense(64 relu) → dense(64 relu) → dense(1) on the pure-Go engine
)

// trainerRoleOpts are the flags of the `trainer` mode, in which the harness is the trainer
// process of an end-to-end run.
type trainerRoleOpts struct {
	coordinator   string
	natsURL       string
	outDir        string
	model         string
	firstStepFile string
}

func runTrainerRole(ctx context.Context, args []string) error {
	var o trainerRoleOpts
	fs := flag.NewFlagSet("trainer", flag.ContinueOnError)
	fs.StringVar(&o.coordinator, "coordinator", "", "coordinator URL")
	fs.StringVar(&o.natsURL, "nats-url", "", "NATS URL")
	fs.StringVar(&o.outDir, "out-dir", "", "trainer output directory")
	fs.StringVar(&o.model, "model", modelNoop, "noop or mlp")
	fs.StringVar(&o.firstStepFile, "first-step-file", "", "where to write the time of the first training step (Unix ns)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// PGTRAIN_LOG_LEVEL=debug, as for the pgtrain roles, shows the reader's timings.
	level := slog.LevelInfo
	if v := os.Getenv("PGTRAIN_LOG_LEVEL"); v != "" {
		if err := level.UnmarshalText([]byte(v)); err != nil {
			return fmt.Errorf("PGTRAIN_LOG_LEVEL: %w", err)
		}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	var once sync.Once
	mark := func() {
		once.Do(func() {
			// Written before the step runs; the harness reads it after the job ends.
			now := strconv.FormatInt(time.Now().UnixNano(), 10)
			log.Debug("first training step")
			if err := os.WriteFile(o.firstStepFile, []byte(now), 0o644); err != nil {
				log.Error("writing the first-step time", "error", err)
			}
		})
	}
	// The job names the "go" backend (the coordinator accepts no other name), so the
	// benchmark's engine is registered under that name, in this process only.
	goEngine, ok := trainer.LookupBackend("go")
	if !ok {
		return fmt.Errorf("the go backend is not registered")
	}
	switch o.model {
	case modelNoop:
		trainer.RegisterBackend("go", func(*messages.Plan) (trainer.Model, error) { return noopModel{mark: mark}, nil })
	case modelMLP:
		trainer.RegisterBackend("go", func(p *messages.Plan) (trainer.Model, error) {
			m, err := goEngine(p)
			if err != nil {
				return nil, err
			}
			return timedModel{Model: m, mark: mark}, nil
		})
	default:
		return fmt.Errorf("--model %q: want %s or %s", o.model, modelNoop, modelMLP)
	}

	nc, err := bus.Connect(o.natsURL, "pgtrain-bench-trainer", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	b, err := bus.Ensure(ctx, nc, bus.Limits{})
	if err != nil {
		return err
	}
	t, err := trainer.New(trainer.Config{
		TrainerID: "bench-trainer",
		OutDir:    o.outDir,
		// Claim the job as soon as it is planned; the default 200 ms would count as pipeline
		// time in the first epoch.
		Poll: 10 * time.Millisecond,
		Once: true,
	}, b, client.New(o.coordinator, log), log)
	if err != nil {
		return err
	}
	return t.Run(ctx)
}

// noopModel is a model that does no work: it takes every batch and returns at once, so an
// epoch measures only how fast the pipeline delivers rows to the trainer.
type noopModel struct{ mark func() }

var zeroLoss = map[string]float64{"loss": 0}

func (m noopModel) TrainOnBatch(x, y []float32, rows int) (map[string]float64, error) {
	m.mark()
	return zeroLoss, nil
}
func (noopModel) Evaluate(x, y []float32, rows int) (map[string]float64, error) {
	return zeroLoss, nil
}

// SaveTFJS writes a model.json without layers: the trainer adds the metadata to it and
// stores it like any model.
func (noopModel) SaveTFJS(dir string) error {
	return os.WriteFile(filepath.Join(dir, model.TFJSModelFile), []byte(`{"format":"layers-model","modelTopology":{}}`), 0o644)
}
func (noopModel) MarshalCheckpoint() ([]byte, error) { return []byte{}, nil }
func (noopModel) UnmarshalCheckpoint(b []byte) error { return nil }

// timedModel is the real engine, noting when its first step starts.
type timedModel struct {
	trainer.Model
	mark func()
}

func (m timedModel) TrainOnBatch(x, y []float32, rows int) (map[string]float64, error) {
	m.mark()
	return m.Model.TrainOnBatch(x, y, rows)
}
