package messages

import (
	"fmt"
	"strconv"
	"strings"
)

// Stream and bucket names, and the subject spaces they hold. internal/bus declares the
// streams themselves; everything else builds subjects through the functions below.
const (
	RawStream      = "PGTRAIN_RAW"
	RawSubjects    = "pgtrain.raw.>"
	ReadyStream    = "PGTRAIN_READY"
	ReadySubjects  = "pgtrain.ready.>"
	StateBucket    = "pgtrain_state"
	PreprocDurable = "preprocessors"
)

// BatchID identifies one page of one range in one read pass of a job.
type BatchID struct {
	JobID string `msgpack:"job" json:"job_id"`
	Pass  int    `msgpack:"pass" json:"pass"`
	Range int    `msgpack:"range" json:"range"`
	Page  int    `msgpack:"page" json:"page"`
}

func (b BatchID) tail() string {
	return b.JobID + "." + strconv.Itoa(b.Pass) + "." + strconv.Itoa(b.Range) + "." + strconv.Itoa(b.Page)
}

// RawSubject is where the fetcher publishes a page.
func (b BatchID) RawSubject() string { return "pgtrain.raw." + b.tail() }

// ReadySubject is where the preprocessor publishes the transformed page; READY keeps at most
// one message per subject, so a batch can never be there twice.
func (b BatchID) ReadySubject() string { return "pgtrain.ready." + b.tail() }

// MsgID is the JetStream message id of the raw page, for publish deduplication.
func (b BatchID) MsgID() string {
	return b.JobID + "/" + strconv.Itoa(b.Pass) + "/" + strconv.Itoa(b.Range) + "/" + strconv.Itoa(b.Page)
}

func (b BatchID) String() string { return b.MsgID() }

// ReadyJobSubjects matches every READY batch of a job (for purging a finished job).
func ReadyJobSubjects(jobID string) string { return "pgtrain.ready." + jobID + ".>" }

// RawJobSubjects matches every RAW page of a job (for purging a finished job).
func RawJobSubjects(jobID string) string { return "pgtrain.raw." + jobID + ".>" }

// ReadyPassSubjects matches every READY batch of one read pass of a job.
func ReadyPassSubjects(jobID string, pass int) string {
	return "pgtrain.ready." + jobID + "." + strconv.Itoa(pass) + ".>"
}

// ValidJobID reports whether id can be used as a subject token and a KV key part.
func ValidJobID(id string) error {
	if id == "" || len(id) > 64 {
		return fmt.Errorf("job id %q: want 1 to 64 characters", id)
	}
	if strings.IndexFunc(id, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	}) >= 0 {
		return fmt.Errorf("job id %q: only a-z, 0-9, '-' and '_' are allowed", id)
	}
	return nil
}

// ReadyRangeSubjects matches every READY batch of one range of one read pass (for purging a
// range the trainer has consumed when later epochs re-read PostgreSQL).
func ReadyRangeSubjects(jobID string, pass, rng int) string {
	return "pgtrain.ready." + jobID + "." + strconv.Itoa(pass) + "." + strconv.Itoa(rng) + ".>"
}
