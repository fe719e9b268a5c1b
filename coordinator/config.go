package coordinator

import (
	"errors"
	"fmt"
	"time"

	"pgtrain/internal/bus"
)

// Config configures a Coordinator. Zero fields take the defaults below.
type Config struct {
	// Listen is the HTTP address; ":0" or "127.0.0.1:0" picks a free port (see Addr).
	Listen string
	// LeaseTTL is how long a range lease lives without a progress report.
	LeaseTTL time.Duration
	// Window is how many ranges, in the trainer's order, fetchers may work ahead of it.
	Window int
	// ReadyMaxBytes is the READY stream's byte limit; a job whose whole table fits in half
	// of it is read from PostgreSQL once and replayed from READY in later epochs.
	ReadyMaxBytes int64
	// MaxPayload is the largest bus message in bytes, for sizing pages; 0 asks the NATS
	// connection.
	MaxPayload int
	// PlanTimeout bounds the planning of one job (statistics and range split run on the
	// whole table).
	PlanTimeout time.Duration
	// PlanConns is how many connections one planning reads on at once: its own
	// transaction and up to PlanConns-1 more from the source's pool, when the pool has them
	// idle (the key split and parts of the statistics run side by side on them).
	PlanConns int
	// ShutdownTimeout bounds the graceful HTTP shutdown.
	ShutdownTimeout time.Duration
	// SnapshotMaxAge bounds how long a snapshot job keeps its snapshot (an open transaction
	// on a pooled connection): a job whose ranges are not all read by then fails.
	SnapshotMaxAge time.Duration
	// MaxSnapshotJobs is how many snapshot jobs may hold a snapshot at once; more
	// submissions are refused with 429 until one ends.
	MaxSnapshotJobs int

	// Tokens are the bearer tokens the API accepts (see LoadTokens); every route but the
	// probes needs one. Without tokens the API is open, so Listen must be a loopback
	// address unless InsecureNoAuth is set.
	Tokens []Token
	// InsecureNoAuth allows serving a non-loopback address without tokens.
	InsecureNoAuth bool
	// TLSCertFile and TLSKeyFile (PEM), both or neither, serve the API over HTTPS.
	TLSCertFile string
	TLSKeyFile  string

	// HTTP server limits, so that a slow or idle client cannot hold a connection for ever:
	// ReadHeaderTimeout and ReadTimeout bound reading a request, WriteTimeout answering it
	// (a submission, which plans, may take PlanTimeout more), IdleTimeout a kept-alive
	// connection between requests.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	// AllowSchemas lists the schemas jobs may read: "SCHEMA" for every source,
	// "SOURCE:SCHEMA" for one ("" is the default source, so ":SCHEMA"). Without an entry
	// for a source every schema but the system ones (pg_catalog, information_schema,
	// pg_toast, the temporary schemas) is readable; system schemas never are. The database
	// role is still the real boundary: give the coordinator a read-only role.
	AllowSchemas []string
	// Limits bound what one job may ask for.
	Limits Limits
	// KeepJobs is how many finished jobs (done, failed or cancelled) are kept; the oldest
	// beyond it are deleted as DELETE /v1/jobs/{id} would. KeepJobsFor deletes a finished
	// job that long after it ended.
	KeepJobs    int
	KeepJobsFor time.Duration
}

// Defaults.
const (
	DefaultListen          = "127.0.0.1:8080"
	DefaultLeaseTTL        = 15 * time.Second
	DefaultWindow          = 8
	DefaultPlanTimeout     = 30 * time.Minute
	DefaultPlanConns       = 3
	MaxPlanConns           = 64
	DefaultShutdownTimeout = 10 * time.Second

	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = time.Minute // a spec body of up to 16 MiB
	DefaultWriteTimeout      = time.Minute
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultSnapshotMaxAge    = time.Hour
	DefaultMaxSnapshotJobs   = 4
	DefaultKeepJobs          = 1000
	DefaultKeepJobsFor       = 7 * 24 * time.Hour
	// MaxKeepJobs bounds KeepJobs: every kept job stays in the coordinator's memory.
	MaxKeepJobs = 100_000
)

// WithDefaults returns a copy with unset fields filled in.
func (c Config) WithDefaults() Config {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.ReadyMaxBytes == 0 {
		c.ReadyMaxBytes = bus.DefaultReadyMaxBytes
	}
	if c.PlanTimeout == 0 {
		c.PlanTimeout = DefaultPlanTimeout
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.SnapshotMaxAge == 0 {
		c.SnapshotMaxAge = DefaultSnapshotMaxAge
	}
	if c.PlanConns == 0 {
		c.PlanConns = DefaultPlanConns
	}
	if c.MaxSnapshotJobs == 0 {
		c.MaxSnapshotJobs = DefaultMaxSnapshotJobs
	}
	if c.KeepJobs == 0 {
		c.KeepJobs = DefaultKeepJobs
	}
	if c.KeepJobsFor == 0 {
		c.KeepJobsFor = DefaultKeepJobsFor
	}
	c.Limits = c.Limits.withDefaults()
	return c
}

// Validate checks a configuration after WithDefaults.
func (c Config) Validate() error {
	var errs []error
	if c.LeaseTTL < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("lease TTL %s: must be at least 100ms", c.LeaseTTL))
	}
	if c.Window < 1 {
		errs = append(errs, fmt.Errorf("window %d: must be at least 1", c.Window))
	}
	if c.ReadyMaxBytes < 0 {
		errs = append(errs, fmt.Errorf("ready max bytes %d: must not be negative", c.ReadyMaxBytes))
	}
	if c.MaxPayload < 0 || (c.MaxPayload > 0 && c.MaxPayload < 4096) {
		errs = append(errs, fmt.Errorf("max payload %d: want 0 (ask the server) or at least 4096 bytes", c.MaxPayload))
	}
	if c.PlanTimeout < 0 || c.ShutdownTimeout < 0 || c.ReadHeaderTimeout < 0 || c.ReadTimeout < 0 || c.WriteTimeout < 0 || c.IdleTimeout < 0 {
		errs = append(errs, errors.New("timeouts must not be negative"))
	}
	if c.SnapshotMaxAge < time.Second {
		errs = append(errs, fmt.Errorf("snapshot max age %s: must be at least 1s", c.SnapshotMaxAge))
	}
	if c.PlanConns < 1 || c.PlanConns > MaxPlanConns {
		errs = append(errs, fmt.Errorf("plan conns %d: want 1 to %d", c.PlanConns, MaxPlanConns))
	}
	if c.MaxSnapshotJobs < 1 {
		errs = append(errs, fmt.Errorf("max snapshot jobs %d: must be at least 1", c.MaxSnapshotJobs))
	}
	if c.KeepJobs < 1 || c.KeepJobs > MaxKeepJobs {
		errs = append(errs, fmt.Errorf("keep jobs %d: want 1 to %d finished jobs", c.KeepJobs, MaxKeepJobs))
	}
	if c.KeepJobsFor < time.Minute {
		errs = append(errs, fmt.Errorf("keep jobs for %s: must be at least 1m", c.KeepJobsFor))
	}
	if err := checkTokens(c.Tokens); err != nil {
		errs = append(errs, err)
	}
	if len(c.Tokens) == 0 && !c.InsecureNoAuth && !isLoopback(c.Listen) {
		errs = append(errs, fmt.Errorf("listen %s: %w", c.Listen, ErrNoAuth))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("TLS: give both the certificate and the key file, or neither"))
	}
	if _, err := newSchemaPolicy(c.AllowSchemas); err != nil {
		errs = append(errs, err)
	}
	if err := c.Limits.validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
