package scorer

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// Config tunes a Scorer. Zero fields take the defaults below (see WithDefaults).
type Config struct {
	// ScorerID names this scorer in reports and logs; default "<hostname>-<pid>".
	ScorerID string
	// Poll is how often the coordinator is asked for the running prediction jobs.
	Poll time.Duration
	// Concurrency is how many batches of one job this scorer writes at once.
	Concurrency int
	// MaxAckPending bounds the batches of one job delivered to all its scorers and not yet
	// acknowledged (the shared consumer's setting).
	MaxAckPending int
	// AckWait is how long a delivered batch may go unacknowledged before it is delivered
	// again (to any scorer); a batch being written is kept alive meanwhile.
	AckWait time.Duration
	// RetryMin and RetryMax bound the backoff of retried writes and subscriptions.
	RetryMin time.Duration
	RetryMax time.Duration
	// ReportTimeout bounds one report to the coordinator (the client retries within it).
	ReportTimeout time.Duration
	// ShutdownTimeout bounds finishing the batches in hand once the context is cancelled.
	ShutdownTimeout time.Duration
}

// Defaults.
const (
	DefaultPoll            = 500 * time.Millisecond
	DefaultConcurrency     = 2
	DefaultMaxAckPending   = 32
	DefaultAckWait         = 30 * time.Second
	DefaultRetryMin        = 100 * time.Millisecond
	DefaultRetryMax        = 5 * time.Second
	DefaultReportTimeout   = 30 * time.Second
	DefaultShutdownTimeout = 15 * time.Second
)

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.ScorerID == "" {
		host, _ := os.Hostname()
		if host == "" {
			host = "scorer"
		}
		c.ScorerID = host + "-" + strconv.Itoa(os.Getpid())
	}
	set := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	set(&c.Poll, DefaultPoll)
	set(&c.AckWait, DefaultAckWait)
	set(&c.RetryMin, DefaultRetryMin)
	set(&c.RetryMax, DefaultRetryMax)
	set(&c.ReportTimeout, DefaultReportTimeout)
	set(&c.ShutdownTimeout, DefaultShutdownTimeout)
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = DefaultMaxAckPending
	}
	return c
}

// ErrConfig is wrapped by every Validate error.
var ErrConfig = errors.New("invalid scorer config")

// Validate checks a config after WithDefaults.
func (c Config) Validate() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"poll", c.Poll}, {"ack wait", c.AckWait}, {"retry min", c.RetryMin}, {"retry max", c.RetryMax},
		{"report timeout", c.ReportTimeout}, {"shutdown timeout", c.ShutdownTimeout}} {
		if d.v <= 0 {
			return fmt.Errorf("%s: %s must be positive: %w", d.name, d.v, ErrConfig)
		}
	}
	if c.RetryMin > c.RetryMax {
		return fmt.Errorf("retry min %s is over retry max %s: %w", c.RetryMin, c.RetryMax, ErrConfig)
	}
	if c.Concurrency < 1 || c.Concurrency > 256 {
		return fmt.Errorf("concurrency %d: want 1 to 256: %w", c.Concurrency, ErrConfig)
	}
	if c.MaxAckPending < c.Concurrency {
		return fmt.Errorf("max ack pending %d is under the concurrency %d: %w", c.MaxAckPending, c.Concurrency, ErrConfig)
	}
	return nil
}
