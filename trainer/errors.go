package trainer

import (
	"errors"
	"fmt"
)

// Sentinel errors, matched with errors.Is.
var (
	// ErrNoBackend: the plan asks for a model backend this binary was built without.
	ErrNoBackend = errors.New("unknown model backend")
	// ErrChecksumMismatch: an epoch saw other rows than the plan says the table holds.
	ErrChecksumMismatch = errors.New("key checksum mismatch")
	// ErrBadBatch: a READY batch does not fit the plan (wrong shape, key out of its range).
	ErrBadBatch = errors.New("batch does not match the plan")
	// ErrBadPlan: the plan cannot be trained (no training range, zero widths, ...).
	ErrBadPlan = errors.New("plan cannot be trained")
	// ErrBadCheckpoint: the checkpoint on disk belongs to another job or cannot be read.
	ErrBadCheckpoint = errors.New("unusable checkpoint")
	// ErrJobGone: the coordinator says the job ended or belongs to another trainer now.
	ErrJobGone = errors.New("job is no longer this trainer's")
)

// retryableError marks an error that says nothing about the job itself (the coordinator or
// the bus was unreachable): the trainer claims the job again and resumes from its
// checkpoint instead of failing it.
type retryableError struct{ err error }

func (e *retryableError) Error() string { return e.err.Error() }
func (e *retryableError) Unwrap() error { return e.err }

func retryable(format string, args ...any) error {
	return &retryableError{err: fmt.Errorf(format, args...)}
}

func isRetryable(err error) bool {
	var r *retryableError
	return errors.As(err, &r)
}
