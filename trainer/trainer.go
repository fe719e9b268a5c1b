package trainer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"pgtrain/coordinator/client"
	"pgtrain/internal/bus"
	"pgtrain/internal/workloop"
	"pgtrain/messages"
)

// Coordinator is the part of the coordinator's API a trainer uses; *client.Client
// implements it.
type Coordinator interface {
	// Claim returns a job to train (with the variant, for a sweep job), a zero answer when
	// there is none. The same trainer id gets the same job back after a restart.
	Claim(ctx context.Context, trainerID string) (messages.ClaimResponse, error)
	ReportTrainer(ctx context.Context, jobID string, p messages.TrainerProgress) error
	FailJob(ctx context.Context, jobID string, req messages.FailRequest) error
}

// finalTimeout bounds the calls made after the context is cancelled (the last progress
// report, a FailJob) so that a shutdown cannot hang on an unreachable coordinator.
const finalTimeout = 10 * time.Second

// Trainer claims jobs and trains them, one at a time.
type Trainer struct {
	cfg   Config
	bus   Bus
	names messages.Names
	coord Coordinator
	log   *slog.Logger
	m     *trainMetrics

	// observe, when set, sees the keys of every batch before the model does (tests use it to
	// record the exact sequence of examples).
	observe func(epoch int, training bool, keys []int64)
}

// Bus is the JetStream side of a trainer: it reads and purges READY, reads plans from the
// state bucket and stores finished models. pgtrain's roles are given one that has declared
// them.
type Bus interface {
	ReadyStream() jetstream.Stream
	StateKV() jetstream.KeyValue
	Names() messages.Names
	// PutModel stores the model files of dir as the job's model; putting it again is
	// harmless.
	PutModel(ctx context.Context, jobID, dir string) error
	// ModelFile reads one file of a stored model (the training state a job with init_from
	// starts from).
	ModelFile(ctx context.Context, jobID, name string) ([]byte, error)
}

// New checks cfg (after applying its defaults) and returns a trainer that reads READY from b
// and talks to the coordinator through c. A nil log discards messages.
func New(cfg Config, b Bus, c Coordinator, log *slog.Logger) (*Trainer, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if b == nil || b.ReadyStream() == nil || b.StateKV() == nil {
		return nil, errors.New("trainer: a bus with the READY stream and the state bucket is required")
	}
	if c == nil {
		return nil, errors.New("trainer: a coordinator client is required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Trainer{cfg: cfg, bus: b, names: b.Names(), coord: c, log: log.With("trainer_id", cfg.TrainerID), m: newTrainMetrics()}, nil
}

// Config returns the configuration in use, defaults applied.
func (t *Trainer) Config() Config { return t.cfg }

// Run claims and trains jobs until ctx is cancelled (or, with Config.Once, until one job has
// ended). It returns nil on a clean shutdown: on cancel the trainer finishes the batch in
// hand, writes a checkpoint and returns. A job that cannot succeed (a checksum mismatch, a
// model that cannot be built, a batch that contradicts the plan) is failed at the
// coordinator; with Once its error is also returned. Coordinator and bus outages are waited
// out: the trainer claims the job again and resumes from its checkpoint.
func (t *Trainer) Run(ctx context.Context) error {
	t.log.Info("trainer started", "out_dir", t.cfg.OutDir, "prefetch", t.cfg.Prefetch, "read_ahead", t.cfg.ReadAhead, "backends", Backends(),
		"backend_override", t.cfg.Backend)
	for {
		if ctx.Err() != nil {
			return nil
		}
		claim, err := t.coord.Claim(ctx, t.cfg.TrainerID)
		id := claim.JobID
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if client.Refused(err) {
				return fmt.Errorf("trainer: the coordinator refused this worker's token (check --coordinator-token-file): %w", err)
			}
			t.log.Warn("claiming a job, will retry", "error", err)
			if !workloop.Sleep(ctx, t.cfg.Poll) {
				return nil
			}
			continue
		}
		if id == "" {
			if !workloop.Sleep(ctx, t.cfg.Poll) {
				return nil
			}
			continue
		}
		err = t.runJob(ctx, id, claim.Variant)
		switch {
		case err == nil:
			if t.cfg.Once {
				return nil
			}
		case ctx.Err() != nil:
			t.log.Info("trainer stopped", "job_id", id)
			return nil
		case errors.Is(err, ErrJobGone) && client.JobState(err) == messages.JobCancelled:
			// As the user asked: not a failure.
			t.log.Info("job cancelled; training stopped, the last checkpoint stays", "job_id", id,
				"dir", filepath.Join(t.cfg.OutDir, id))
			if t.cfg.Once {
				return nil
			}
		case errors.Is(err, ErrJobGone):
			t.log.Warn("job taken away by the coordinator", "job_id", id, "error", err)
			if t.cfg.Once {
				return fmt.Errorf("job %s: %w", id, err)
			}
		case isRetryable(err):
			t.log.Warn("job interrupted, will claim it again and resume", "job_id", id, "error", err)
			if !workloop.Sleep(ctx, t.cfg.Poll) {
				return nil
			}
		default:
			t.log.Error("job failed", "job_id", id, "error", err)
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalTimeout)
			if ferr := t.coord.FailJob(fctx, id, messages.FailRequest{Error: err.Error(), TrainerID: t.cfg.TrainerID, Variant: claim.Variant}); ferr != nil {
				t.log.Error("reporting the failure", "job_id", id, "error", ferr)
			}
			cancel()
			if t.cfg.Once {
				return fmt.Errorf("job %s: %w", id, err)
			}
		}
	}
}

// runJob trains one job (or one variant of a sweep job) from its checkpoint, or from the
// start.
func (t *Trainer) runJob(ctx context.Context, id string, variant *int) error {
	if err := messages.ValidJobID(id); err != nil {
		return fmt.Errorf("%w: %w", ErrBadPlan, err)
	}
	began := time.Now()
	plan, err := bus.GetPlan(ctx, t.bus.StateKV(), id)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return retryable("reading the plan: %w", err)
	}
	t.log.Debug("plan read", "job_id", id, "seconds", time.Since(began).Seconds())
	if err := checkPlan(plan); err != nil {
		return err
	}
	dir, log := filepath.Join(t.cfg.OutDir, id), t.log.With("job_id", id)
	if variant != nil {
		if *variant < 0 || *variant >= len(plan.Spec.Sweep) {
			return fmt.Errorf("job %s: %w: variant %d of a sweep of %d", id, ErrBadPlan, *variant, len(plan.Spec.Sweep))
		}
		// Every variant reads the job's batches; its spec (so its range order), model and files are its own.
		plan = plan.ForVariant(*variant)
		dir, log = filepath.Join(t.cfg.OutDir, filepath.FromSlash(messages.VariantDir(id, *variant))), log.With("variant", *variant)
	}
	m, err := buildModel(plan, t.cfg.Backend)
	if err != nil {
		return err
	}
	j := &jobRun{
		t:     t,
		plan:  plan,
		dir:   dir,
		model: m,
		log:   log,
		ctl:   controlsOf(plan),
	}
	if err := j.ctl.checkEngine(m); err != nil {
		return err
	}
	j.pos.Callbacks = j.ctl.newState()
	ck, err := loadCheckpoint(j.dir, id)
	switch {
	case errors.Is(err, ErrBadCheckpoint):
		// Starting over gives the same weights (they are a function of data, spec and
		// seed), only later.
		j.log.Warn("ignoring the checkpoint, starting the job over", "error", err)
		if err := t.warmStart(ctx, j); err != nil {
			return err
		}
	case err != nil:
		return err
	case ck == nil:
		if err := t.warmStart(ctx, j); err != nil {
			return err
		}
	default:
		if err := m.UnmarshalCheckpoint(ck.Model); err != nil {
			return fmt.Errorf("restoring the model from the checkpoint: %w", err)
		}
		j.pos = ck.Position
		if err := j.resumeControls(); err != nil {
			return err
		}
		j.log.Info("resuming from checkpoint", "epoch", j.pos.Epoch+1, "consumed", j.pos.Consumed,
			"offset", j.pos.Offset, "finished", j.pos.Finished)
	}
	return j.run(ctx)
}

// startFromer is a model that can take a stored model's training state; the pure-Go engine is
// one.
type startFromer interface {
	StartFrom(state []byte) error
}

// warmStart sets a job's fresh model to the training state of the stored model it starts
// from (plan.WarmStart), when it has one. A job resumed from its own checkpoint does not
// come here: the checkpoint holds the state already.
func (t *Trainer) warmStart(ctx context.Context, j *jobRun) error {
	ws := j.plan.WarmStart
	if ws == nil {
		return nil
	}
	sf, ok := j.model.(startFromer)
	if !ok {
		return fmt.Errorf("starting from model %s: this job's backend cannot take a stored training state (the go backend can): %w", ws.InitFrom, ErrNoBackend)
	}
	state, err := t.bus.ModelFile(ctx, ws.InitFrom, messages.TrainingStateFile)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, bus.ErrNoModel) {
			return fmt.Errorf("starting from model %s: %w", ws.InitFrom, err)
		}
		return retryable("reading the training state of model %s: %w", ws.InitFrom, err)
	}
	if err := sf.StartFrom(state); err != nil {
		return fmt.Errorf("starting from model %s: %w", ws.InitFrom, err)
	}
	j.log.Info("starting from a stored model", "init_from", ws.InitFrom, "initial_epoch", ws.InitialEpoch,
		"since", ws.Since, "after_key", ws.AfterKey, "preprocessing", ws.Preprocessing)
	return nil
}

// checkPlan refuses plans the loop below could not train.
func checkPlan(p *messages.Plan) error {
	var errs []error
	if p.TrainingRanges() < 1 {
		errs = append(errs, fmt.Errorf("%d ranges of which %d validate: no training range", len(p.Ranges), p.ValidationRanges))
	}
	if p.ValidationRanges < 0 {
		errs = append(errs, fmt.Errorf("%d validation ranges", p.ValidationRanges))
	}
	if p.InputDim < 1 || p.LabelDim < 1 {
		errs = append(errs, fmt.Errorf("input width %d, label width %d", p.InputDim, p.LabelDim))
	}
	if p.Spec.Epochs < 1 || p.Spec.BatchSize < 1 {
		errs = append(errs, fmt.Errorf("%d epochs of batch size %d", p.Spec.Epochs, p.Spec.BatchSize))
	}
	for i, r := range p.Ranges {
		if r.Index != i || r.Lo > r.Hi {
			errs = append(errs, fmt.Errorf("range %d is [%d, %d] with index %d", i, r.Lo, r.Hi, r.Index))
			break
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("job %s: %w: %w", p.JobID, ErrBadPlan, errors.Join(errs...))
	}
	return nil
}

// jobGone translates the coordinator's "not yours any more" answers.
func jobGone(err error) bool {
	return errors.Is(err, client.ErrLeaseLost) || errors.Is(err, client.ErrNotFound)
}
