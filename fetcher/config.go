package fetcher

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// Config tunes a Fetcher. Zero fields take the defaults below (see WithDefaults).
type Config struct {
	// WorkerID names this fetcher in leases, status and logs; default "<hostname>-<pid>".
	WorkerID string
	// Poll is how long to wait before asking again when the coordinator has no work. A
	// newly stored plan cuts the wait short (bus.WatchPlans).
	Poll time.Duration
	// HeartbeatEvery is the longest time between two reports on a held lease (a third of the
	// lease's remaining time, when that is shorter).
	HeartbeatEvery time.Duration
	// RetryMin and RetryMax bound the exponential backoff of retried reads, publishes and
	// coordinator calls.
	RetryMin time.Duration
	RetryMax time.Duration
	// PublishTimeout bounds one publish attempt (waiting for the PubAck).
	PublishTimeout time.Duration
	// ReportTimeout bounds one lease report (the coordinator client retries within it).
	ReportTimeout time.Duration
	// ReadAhead is how many pages may wait, read, for their publish.
	ReadAhead int
	// PayloadHeadroom is kept free under the connection's max payload for headers.
	PayloadHeadroom int
	// ShutdownTimeout bounds finishing the current page and releasing the lease after the
	// context is cancelled.
	ShutdownTimeout time.Duration
	// SummaryEvery is how often the rows/s summary is logged at info.
	SummaryEvery time.Duration
}

// Defaults.
const (
	DefaultPoll            = 200 * time.Millisecond
	DefaultHeartbeatEvery  = 5 * time.Second
	DefaultRetryMin        = 100 * time.Millisecond
	DefaultRetryMax        = 5 * time.Second
	DefaultPublishTimeout  = 10 * time.Second
	DefaultReportTimeout   = 30 * time.Second
	DefaultReadAhead       = 2
	DefaultPayloadHeadroom = 4 << 10
	DefaultShutdownTimeout = 15 * time.Second
	DefaultSummaryEvery    = 30 * time.Second
)

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.WorkerID == "" {
		host, _ := os.Hostname()
		if host == "" {
			host = "fetcher"
		}
		c.WorkerID = host + "-" + strconv.Itoa(os.Getpid())
	}
	set := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	set(&c.Poll, DefaultPoll)
	set(&c.HeartbeatEvery, DefaultHeartbeatEvery)
	set(&c.RetryMin, DefaultRetryMin)
	set(&c.RetryMax, DefaultRetryMax)
	set(&c.PublishTimeout, DefaultPublishTimeout)
	set(&c.ReportTimeout, DefaultReportTimeout)
	set(&c.ShutdownTimeout, DefaultShutdownTimeout)
	set(&c.SummaryEvery, DefaultSummaryEvery)
	if c.ReadAhead == 0 {
		c.ReadAhead = DefaultReadAhead
	}
	if c.PayloadHeadroom == 0 {
		c.PayloadHeadroom = DefaultPayloadHeadroom
	}
	return c
}

// Validate checks a Config after WithDefaults.
func (c Config) Validate() error {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"poll", c.Poll}, {"heartbeat_every", c.HeartbeatEvery}, {"retry_min", c.RetryMin},
		{"retry_max", c.RetryMax}, {"publish_timeout", c.PublishTimeout}, {"report_timeout", c.ReportTimeout},
		{"shutdown_timeout", c.ShutdownTimeout}, {"summary_every", c.SummaryEvery},
	} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("fetcher %s must be positive, got %s", d.name, d.v))
		}
	}
	if c.RetryMax < c.RetryMin {
		errs = append(errs, fmt.Errorf("fetcher retry_max %s is below retry_min %s", c.RetryMax, c.RetryMin))
	}
	if c.ReadAhead < 1 || c.ReadAhead > 64 {
		errs = append(errs, fmt.Errorf("fetcher read_ahead must be 1 to 64, got %d", c.ReadAhead))
	}
	if c.PayloadHeadroom < 512 || c.PayloadHeadroom > 1<<20 {
		errs = append(errs, fmt.Errorf("fetcher payload_headroom must be 512 B to 1 MiB, got %d", c.PayloadHeadroom))
	}
	if c.WorkerID == "" {
		errs = append(errs, errors.New("fetcher worker_id is empty"))
	}
	return errors.Join(errs...)
}
