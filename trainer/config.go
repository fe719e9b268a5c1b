package trainer

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// Defaults for Config.
const (
	DefaultOutDir      = "pgtrain-data/models"
	DefaultPoll        = 200 * time.Millisecond
	DefaultPrefetch    = 2
	DefaultReadAhead   = 4
	MaxReadAhead       = 64
	DefaultReadBackoff = 50 * time.Millisecond
	DefaultHeartbeat   = 5 * time.Second
)

// Config tunes a trainer. The zero value works: WithDefaults fills in every unset field.
type Config struct {
	// TrainerID names this trainer to the coordinator. It must stay the same across
	// restarts: a trainer that comes back with the same id gets its job back and resumes
	// from its checkpoint. Default: the host name.
	TrainerID string
	// OutDir holds one directory per job: checkpoint, history.json and the exported model.
	OutDir string
	// Poll is how often to ask the coordinator for a job when there is none, and how long
	// to wait before claiming again after the coordinator or the bus failed.
	Poll time.Duration
	// Prefetch is how many ranges the reader may hold beyond the one being trained on.
	Prefetch int
	// ReadAhead is how many of a range's pages the reader requests from READY at once (the
	// one it decodes and those after it), so that the bus's round trips overlap the decoding;
	// 1 reads one page at a time. It adds up to ReadAhead pages to the memory Prefetch bounds.
	ReadAhead int
	// ReadBackoff caps the wait between two looks for a batch that is not in READY yet.
	ReadBackoff time.Duration
	// Heartbeat is the longest the trainer stays silent to the coordinator while it trains a
	// job (waiting for data, or on a long range); the coordinator gives the job of a trainer
	// silent for 3 lease TTLs to another trainer.
	Heartbeat time.Duration
	// Once makes Run return after one job (for `pgtrain up` and tests); otherwise Run keeps
	// claiming jobs until its context is cancelled.
	Once bool
	// StepDelay is a pause after every batch: it throttles a trainer that shares its
	// machine, and lets the fault-injection suite make the trainer the slowest stage, whose
	// backpressure must bound every other process's memory and READY's size.
	StepDelay time.Duration
	// AllowDrift turns a key checksum that differs from the plan's into a warning instead of
	// a failed job. It is for live tables read without a snapshot, whose rows legitimately
	// change between planning and reading.
	AllowDrift bool
	// Backend, when set, runs every job on this model backend ("go", or "tensorflow" in a
	// binary built with that tag) whatever backend the job's spec names. Empty: the spec
	// decides, "go" by default. The two backends agree to float32 rounding, but their
	// checkpoints differ: a job resumes only on the backend that checkpointed it.
	Backend string
}

// WithDefaults returns a copy with unset fields filled in.
func (c Config) WithDefaults() Config {
	if c.TrainerID == "" {
		if h, err := os.Hostname(); err == nil && h != "" {
			c.TrainerID = h
		} else {
			c.TrainerID = "trainer"
		}
	}
	if c.OutDir == "" {
		c.OutDir = DefaultOutDir
	}
	if c.Poll == 0 {
		c.Poll = DefaultPoll
	}
	if c.Prefetch == 0 {
		c.Prefetch = DefaultPrefetch
	}
	if c.ReadAhead == 0 {
		c.ReadAhead = DefaultReadAhead
	}
	if c.ReadBackoff == 0 {
		c.ReadBackoff = DefaultReadBackoff
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	return c
}

// Validate reports every field that is out of range.
func (c Config) Validate() error {
	var errs []error
	if c.TrainerID == "" {
		errs = append(errs, errors.New("trainer id is empty"))
	}
	if c.OutDir == "" {
		errs = append(errs, errors.New("out dir is empty"))
	}
	if c.Poll <= 0 {
		errs = append(errs, fmt.Errorf("poll %s: must be positive", c.Poll))
	}
	if c.Prefetch < 1 {
		errs = append(errs, fmt.Errorf("prefetch %d: must be at least 1", c.Prefetch))
	}
	if c.ReadAhead < 1 || c.ReadAhead > MaxReadAhead {
		errs = append(errs, fmt.Errorf("read ahead %d: must be 1 to %d", c.ReadAhead, MaxReadAhead))
	}
	if c.ReadBackoff <= 0 {
		errs = append(errs, fmt.Errorf("read backoff %s: must be positive", c.ReadBackoff))
	}
	if c.StepDelay < 0 {
		errs = append(errs, fmt.Errorf("step delay %s: must not be negative", c.StepDelay))
	}
	if c.Heartbeat <= 0 {
		errs = append(errs, fmt.Errorf("heartbeat %s: must be positive", c.Heartbeat))
	}
	if c.Backend != "" {
		if _, err := lookup(c.Backend); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("trainer config: %w", errors.Join(errs...))
	}
	return nil
}
