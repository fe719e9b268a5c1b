package messages

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// DefaultPrefix names the streams, the state bucket and the subjects of a deployment that
// does not pick its own prefix.
const DefaultPrefix = "PGTRAIN"

// PreprocDurable is the durable consumer on RAW that all preprocessors share. It needs no
// prefix: a consumer's name is scoped to its stream, which carries the prefix.
const PreprocDurable = "preprocessors"

// maxPrefixLen keeps the longest derived name (prefix + "_READY") well inside the limits
// JetStream puts on stream and bucket names.
const maxPrefixLen = 32

// ErrBadPrefix is returned for a prefix that cannot name streams, buckets and subjects.
var ErrBadPrefix = errors.New("invalid NATS prefix")

// ValidPrefix reports whether p can prefix every name: letters, digits, '-' and '_' are what
// stream names, KV bucket names and subject tokens all accept.
func ValidPrefix(p string) error {
	if p == "" || len(p) > maxPrefixLen {
		return fmt.Errorf("nats prefix %q: want 1 to %d characters: %w", p, maxPrefixLen, ErrBadPrefix)
	}
	if strings.IndexFunc(p, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	}) >= 0 {
		return fmt.Errorf("nats prefix %q: only letters, digits, '-' and '_' are allowed: %w", p, ErrBadPrefix)
	}
	return nil
}

// Names are the stream, bucket and subject names of one deployment, derived from its
// prefix, so that deployments with different prefixes share a NATS account without seeing
// each other's data. The prefix is case-insensitive: stream names take it in upper case,
// the bucket and the subjects in lower case (two streams may not share subjects, so
// prefixes differing only in case must be one deployment). The zero value uses
// DefaultPrefix.
type Names struct {
	upper, lower string
}

// NewNames validates prefix; "" means DefaultPrefix.
func NewNames(prefix string) (Names, error) {
	if prefix == "" {
		return Names{}, nil
	}
	if err := ValidPrefix(prefix); err != nil {
		return Names{}, err
	}
	return Names{upper: strings.ToUpper(prefix), lower: strings.ToLower(prefix)}, nil
}

func (n Names) up() string {
	if n.upper == "" {
		return DefaultPrefix
	}
	return n.upper
}

func (n Names) low() string {
	if n.lower == "" {
		return strings.ToLower(DefaultPrefix)
	}
	return n.lower
}

// Prefix is the prefix in upper case.
func (n Names) Prefix() string { return n.up() }

// RawStream is the work queue of pages read from PostgreSQL.
func (n Names) RawStream() string { return n.up() + "_RAW" }

// ScoreStream is the work queue of the pages of prediction jobs, which the scorers
// consume (they transform the pages themselves: no preprocessor, no READY).
func (n Names) ScoreStream() string { return n.up() + "_SCORE" }

// PageStream is the stream the pages of a job of the given kind go to.
func (n Names) PageStream(kind string) string {
	if kind == JobKindPrediction {
		return n.ScoreStream()
	}
	return n.RawStream()
}

// ReadyStream holds the preprocessed batches.
func (n Names) ReadyStream() string { return n.up() + "_READY" }

// StateBucket is the KV bucket of job state and plans.
func (n Names) StateBucket() string { return n.low() + "_state" }

// ModelBucket is the Object Store bucket of finished models.
func (n Names) ModelBucket() string { return n.low() + "_models" }

// RawSubjects is the subject space of RawStream.
func (n Names) RawSubjects() string { return n.low() + ".raw.>" }

// ScoreSubjects is the subject space of ScoreStream.
func (n Names) ScoreSubjects() string { return n.low() + ".score.>" }

// ReadySubjects is the subject space of ReadyStream.
func (n Names) ReadySubjects() string { return n.low() + ".ready.>" }

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
func (n Names) RawSubject(b BatchID) string { return n.low() + ".raw." + b.tail() }

// ReadySubject is where the preprocessor publishes the transformed page; READY keeps at most
// one message per subject, so a batch can never be there twice.
func (n Names) ReadySubject(b BatchID) string { return n.low() + ".ready." + b.tail() }

// ScoreSubject is where the fetcher publishes a page of a prediction job.
func (n Names) ScoreSubject(b BatchID) string { return n.low() + ".score." + b.tail() }

// PageSubject is where the fetcher publishes a page of a job of the given kind: a
// prediction job's pages go to its scorers, every other job's to the preprocessors.
func (n Names) PageSubject(kind string, b BatchID) string {
	if kind == JobKindPrediction {
		return n.ScoreSubject(b)
	}
	return n.RawSubject(b)
}

// ParseRawSubject is the inverse of RawSubject: it returns the batch a RAW subject names, or
// an error for any subject RawSubject cannot have built.
func (n Names) ParseRawSubject(subject string) (BatchID, error) {
	return n.parsePageSubject(subject, n.low()+".raw.")
}

// ParseScoreSubject is the inverse of ScoreSubject.
func (n Names) ParseScoreSubject(subject string) (BatchID, error) {
	return n.parsePageSubject(subject, n.low()+".score.")
}

func (n Names) parsePageSubject(subject, prefix string) (BatchID, error) {
	rest, ok := strings.CutPrefix(subject, prefix)
	if !ok {
		return BatchID{}, fmt.Errorf("subject %q: not under %s>", subject, prefix)
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 4 {
		return BatchID{}, fmt.Errorf("subject %q: want %s<job>.<pass>.<range>.<page>", subject, prefix)
	}
	if err := ValidJobID(parts[0]); err != nil {
		return BatchID{}, fmt.Errorf("subject %q: %w", subject, err)
	}
	id := BatchID{JobID: parts[0]}
	for i, f := range []struct {
		name string
		dst  *int
	}{{"pass", &id.Pass}, {"range", &id.Range}, {"page", &id.Page}} {
		v, err := strconv.Atoi(parts[i+1])
		// Only the canonical form RawSubject writes: no sign, no leading zeros.
		if err != nil || v < 0 || strconv.Itoa(v) != parts[i+1] {
			return BatchID{}, fmt.Errorf("subject %q: %s %q is not a non-negative integer", subject, f.name, parts[i+1])
		}
		*f.dst = v
	}
	return id, nil
}

// MsgID is the JetStream message id of the raw page, for publish deduplication.
func (b BatchID) MsgID() string {
	return b.JobID + "/" + strconv.Itoa(b.Pass) + "/" + strconv.Itoa(b.Range) + "/" + strconv.Itoa(b.Page)
}

func (b BatchID) String() string { return b.MsgID() }

// ReadyJobSubjects matches every READY batch of a job (for purging a finished job).
func (n Names) ReadyJobSubjects(jobID string) string { return n.low() + ".ready." + jobID + ".>" }

// RawJobSubjects matches every RAW page of a training job (for purging a finished job).
func (n Names) RawJobSubjects(jobID string) string { return n.low() + ".raw." + jobID + ".>" }

// ScoreJobSubjects matches every page of a prediction job: the filter of its scorers'
// consumer, and what is purged when it ends.
func (n Names) ScoreJobSubjects(jobID string) string { return n.low() + ".score." + jobID + ".>" }

// ReadyPassSubjects matches every READY batch of one read pass of a job.
func (n Names) ReadyPassSubjects(jobID string, pass int) string {
	return n.low() + ".ready." + jobID + "." + strconv.Itoa(pass) + ".>"
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
func (n Names) ReadyRangeSubjects(jobID string, pass, rng int) string {
	return n.low() + ".ready." + jobID + "." + strconv.Itoa(pass) + "." + strconv.Itoa(rng) + ".>"
}

// ScorerDurable is the durable consumer on ScoreStream that the scorers of one prediction
// job share: one per job, filtered on the job's ScoreJobSubjects.
func ScorerDurable(jobID string) string { return "scorers-" + jobID }
