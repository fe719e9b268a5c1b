package preprocessor

import (
	"errors"
	"fmt"
	"time"
)

// Config tunes a Preprocessor. Zero fields take the defaults below (see WithDefaults).
type Config struct {
	// Concurrency is how many pages are transformed at once.
	Concurrency int
	// Prefetch is how many pages the client buffers ahead of the workers; default
	// 2 × Concurrency. Pages are up to the max payload each, so keep it small.
	Prefetch int
	// PublishTimeout bounds one READY publish attempt (waiting for the PubAck).
	PublishTimeout time.Duration
	// RetryMin and RetryMax bound the backoff of READY publishes refused because the stream
	// is full or failed on the way.
	RetryMin time.Duration
	RetryMax time.Duration
	// NoPlanDelay is the redelivery delay of a page whose job has no plan (yet).
	NoPlanDelay time.Duration
	// InProgressEvery is how often a page held longer (READY full) is marked in progress so
	// that it is not redelivered; 0 means a third of the consumer's AckWait.
	InProgressEvery time.Duration
	// ShutdownTimeout bounds each acknowledgement and coordinator call once the context is
	// cancelled.
	ShutdownTimeout time.Duration
	// SummaryEvery is how often the counters are logged at info.
	SummaryEvery time.Duration
}

// Defaults.
const (
	DefaultConcurrency     = 2
	DefaultPublishTimeout  = 10 * time.Second
	DefaultRetryMin        = 50 * time.Millisecond
	DefaultRetryMax        = 2 * time.Second
	DefaultNoPlanDelay     = 2 * time.Second
	DefaultShutdownTimeout = 15 * time.Second
	DefaultSummaryEvery    = 30 * time.Second
)

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Prefetch == 0 {
		c.Prefetch = 2 * c.Concurrency
	}
	set := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	set(&c.PublishTimeout, DefaultPublishTimeout)
	set(&c.RetryMin, DefaultRetryMin)
	set(&c.RetryMax, DefaultRetryMax)
	set(&c.NoPlanDelay, DefaultNoPlanDelay)
	set(&c.ShutdownTimeout, DefaultShutdownTimeout)
	set(&c.SummaryEvery, DefaultSummaryEvery)
	return c
}

// Validate checks a Config after WithDefaults.
func (c Config) Validate() error {
	var errs []error
	if c.Concurrency < 1 || c.Concurrency > 256 {
		errs = append(errs, fmt.Errorf("preprocessor concurrency must be 1 to 256, got %d", c.Concurrency))
	}
	if c.Prefetch < 1 || c.Prefetch > 1024 {
		errs = append(errs, fmt.Errorf("preprocessor prefetch must be 1 to 1024, got %d", c.Prefetch))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"publish_timeout", c.PublishTimeout}, {"retry_min", c.RetryMin}, {"retry_max", c.RetryMax},
		{"no_plan_delay", c.NoPlanDelay}, {"shutdown_timeout", c.ShutdownTimeout}, {"summary_every", c.SummaryEvery},
	} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("preprocessor %s must be positive, got %s", d.name, d.v))
		}
	}
	if c.InProgressEvery < 0 {
		errs = append(errs, fmt.Errorf("preprocessor in_progress_every must not be negative, got %s", c.InProgressEvery))
	}
	if c.RetryMax < c.RetryMin {
		errs = append(errs, errors.New("preprocessor retry_max is below retry_min"))
	}
	return errors.Join(errs...)
}
