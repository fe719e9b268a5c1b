// Package client is the Go client of the pgtrain coordinator's HTTP API, used by the
// fetchers, the trainer and the command line.
//
// Requests are retried with backoff (go-retryablehttp) on connection errors and 5xx answers,
// so a coordinator restart is a pause rather than a failure. That is safe because every
// endpoint is idempotent: job submission and lease grants carry an Idempotency-Key that the
// coordinator remembers, lease progress never moves a lease backwards, and claims are keyed
// by the trainer's id; a cancel of a cancelled job answers the same, and a second delete is
// ErrNotFound. A 401 or 403 is final and not retried: WithToken sets the bearer
// token the coordinator's routes need, WithTLSConfig the CA of an https:// coordinator.
package client
