package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"pgtrain/internal/bus"
	"pgtrain/messages"
)

// Task states. A task with no KV record is pending: records are created on first grant, so
// planning a job with many ranges and passes writes nothing per range.
const (
	taskPending = "pending"
	taskLeased  = "leased"
	taskDone    = "done"
)

// jobRecord is the KV value under job.<id>.
type jobRecord struct {
	ID    string `json:"id"`
	State string `json:"state"`
	Error string `json:"error,omitempty"`
	// Reason says why a job that did not fail ended as it did (nothing_new).
	Reason    string                 `json:"reason,omitempty"`
	Table     string                 `json:"table"`
	CreatedAt time.Time              `json:"created_at"`
	UpdatedAt time.Time              `json:"updated_at"`
	Trainer   messages.TrainerState  `json:"trainer"`
	Results   []messages.EpochResult `json:"results,omitempty"`
	ModelPath string                 `json:"model_path,omitempty"`
	// StopReason and BestEpoch are the trainer's final report of a training that its
	// callbacks ended early or that kept a best epoch; BestModel says model_checkpoint
	// stored that epoch's model beside the last.
	StopReason string `json:"stop_reason,omitempty"`
	BestEpoch  *int   `json:"best_epoch,omitempty"`
	BestModel  bool   `json:"best_model,omitempty"`
	// EvalLoss and EvalMetrics are a finished prediction job's evaluation of its model on
	// the scored rows (when the table holds the label).
	EvalLoss    *float64           `json:"eval_loss,omitempty"`
	EvalMetrics map[string]float64 `json:"eval_metrics,omitempty"`
	// Variants are a sweep job's variants, in the order of its spec's sweep.
	Variants []variantRecord `json:"variants,omitempty"`
	// Cleaned is set once an ended job's snapshot is released and its subjects purged.
	Cleaned bool `json:"cleaned,omitempty"`
}

func (r *jobRecord) ended() bool { return messages.JobEnded(r.State) }

// taskRecord is the KV value under range.<id>.<pass>.<range>: one range of one read pass.
type taskRecord struct {
	State     string    `json:"state"`
	LeaseID   string    `json:"lease_id,omitempty"`
	Worker    string    `json:"worker,omitempty"`
	ExpiresAt time.Time `json:"expires_at"`
	NextPage  int       `json:"next_page"`
	LastKey   int64     `json:"last_key"`
	// LastKeyText is the last key's text for a typed key.
	LastKeyText []string `json:"last_key_text,omitempty"`
	Rows        int64    `json:"rows"`
	// Grants counts leases handed out; Expired and Released count hand-overs.
	Grants   int `json:"grants"`
	Expired  int `json:"expired,omitempty"`
	Released int `json:"released,omitempty"`
	// Resumed counts grants that continued the range from a page another holder recorded.
	Resumed int `json:"resumed,omitempty"`
}

func jobKey(id string) string { return "job." + id }
func taskKey(id string, pass, r int) string {
	return "range." + id + "." + strconv.Itoa(pass) + "." + strconv.Itoa(r)
}
func idemKey(key string) string { return "idem." + key }
func leaseID(job string, pass, r, grant int) string {
	return job + "." + strconv.Itoa(pass) + "." + strconv.Itoa(r) + "." + strconv.Itoa(grant)
}

// parseLeaseID splits job.pass.range.grant.
func parseLeaseID(id string) (job string, pass, r, grant int, ok bool) {
	parts := strings.Split(id, ".")
	if len(parts) != 4 || messages.ValidJobID(parts[0]) != nil {
		return "", 0, 0, 0, false
	}
	var nums [3]int
	for i, p := range parts[1:] {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return "", 0, 0, 0, false
		}
		nums[i] = n
	}
	return parts[0], nums[0], nums[1], nums[2], true
}

// errConcurrentWrite means another writer changed a record between our read and our write;
// the in-memory copy has been reloaded and the request can be retried.
var errConcurrentWrite = errors.New("state changed concurrently; retry")

// kvTimeout bounds each state write, so a NATS outage turns into 503s that clients retry
// instead of requests that hang.
const kvTimeout = 5 * time.Second

// store is the KV side of the state.
type store struct {
	kv jetstream.KeyValue
}

// put writes v under key with compare-and-set: rev 0 creates the key, otherwise the write
// succeeds only if the key is still at rev. It returns the new revision.
func (s store) put(ctx context.Context, key string, rev uint64, v any) (uint64, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	var nrev uint64
	if rev == 0 {
		nrev, err = s.kv.Create(ctx, key, b)
	} else {
		nrev, err = s.kv.Update(ctx, key, b, rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return 0, fmt.Errorf("writing %s: %w", key, errConcurrentWrite)
	}
	if err != nil {
		return 0, fmt.Errorf("writing %s: %w", key, err)
	}
	return nrev, nil
}

// get reads key into v; ok is false when the key does not exist.
func (s store) get(ctx context.Context, key string, v any) (rev uint64, ok bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("reading %s: %w", key, err)
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return 0, false, fmt.Errorf("decoding %s: %w", key, err)
	}
	return e.Revision(), true, nil
}

// scan calls f with every current entry whose key matches pattern.
func (s store) scan(ctx context.Context, pattern string, f func(e jetstream.KeyValueEntry) error) error {
	w, err := s.kv.Watch(ctx, pattern, jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("listing %s: %w", pattern, err)
	}
	defer w.Stop()
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("listing %s: watcher closed", pattern)
			}
			if e == nil { // the initial values are all delivered
				return nil
			}
			if e.Operation() != jetstream.KeyValuePut {
				continue
			}
			if err := f(e); err != nil {
				return err
			}
		case <-ctx.Done():
			return fmt.Errorf("listing %s: %w", pattern, ctx.Err())
		}
	}
}

// loadJobs reads every job with its plan and task records, for a coordinator that starts on
// an existing bucket. A job whose records cannot be decoded (or make no sense) comes back
// with loadErr set and no plan; only a failure to read the bucket is an error, so one bad
// job cannot stop every restart.
func (s store) loadJobs(ctx context.Context) ([]*job, error) {
	var jobs []*job
	err := s.scan(ctx, jobKey("*"), func(e jetstream.KeyValueEntry) error {
		j := &job{rev: e.Revision()}
		id := strings.TrimPrefix(e.Key(), "job.")
		if err := json.Unmarshal(e.Value(), &j.rec); err != nil {
			j.rec, j.loadErr = jobRecord{ID: id}, fmt.Errorf("decoding %s: %w", e.Key(), err)
		} else if j.rec.ID != id {
			j.loadErr = fmt.Errorf("%s: the record names job %q", e.Key(), j.rec.ID)
			j.rec.ID = id
		}
		jobs = append(jobs, j)
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, j := range jobs {
		if j.loadErr != nil {
			continue
		}
		p, err := bus.GetPlan(ctx, s.kv, j.rec.ID)
		if errors.Is(err, bus.ErrNoPlan) || errors.Is(err, bus.ErrBadPlan) {
			j.loadErr = err
			continue
		}
		if err != nil {
			return nil, err
		}
		if err := checkLoadedPlan(p, j.rec.ID); err != nil {
			j.loadErr = err
			continue
		}
		j.init(p)
		var bad error
		err = s.scan(ctx, "range."+j.rec.ID+".>", func(e jetstream.KeyValueEntry) error {
			parts := strings.Split(e.Key(), ".")
			if len(parts) != 4 || bad != nil {
				return nil
			}
			pass, err1 := strconv.Atoi(parts[2])
			r, err2 := strconv.Atoi(parts[3])
			if err1 != nil || err2 != nil || !j.validTask(pass, r) {
				return nil
			}
			t := j.task(pass, r)
			if err := json.Unmarshal(e.Value(), &t.rec); err != nil {
				bad = fmt.Errorf("decoding %s: %w", e.Key(), err)
				return nil
			}
			t.rev = e.Revision()
			return nil
		})
		if err != nil {
			return nil, err
		}
		if bad == nil && j.prediction() {
			bad = s.loadScored(ctx, j)
		}
		if bad != nil {
			j.plan, j.passes, j.scored, j.loadErr = nil, nil, nil, bad
			continue
		}
		j.advance()
		if j.prediction() {
			j.advanceScored()
		}
	}
	return jobs, nil
}

// checkLoadedPlan refuses a stored plan the job state cannot be built on.
func checkLoadedPlan(p *messages.Plan, id string) error {
	switch {
	case p.JobID != id:
		return fmt.Errorf("plan of job %s: it names job %q", id, p.JobID)
	case len(p.Ranges) == 0 && p.WarmStart == nil:
		// (A warm start with nothing new has none.)
		return fmt.Errorf("plan of job %s: no ranges", id)
	case p.Spec.Epochs < 1:
		return fmt.Errorf("plan of job %s: %d epochs", id, p.Spec.Epochs)
	}
	return nil
}

// loadScored reads a prediction job's scored.<id>.<range> records. A record that cannot be
// decoded is returned as the job's load error; only a failure to read the bucket stops the
// start, as a KV error.
func (s store) loadScored(ctx context.Context, j *job) error {
	var bad error
	err := s.scan(ctx, "scored."+j.rec.ID+".*", func(e jetstream.KeyValueEntry) error {
		r, err := strconv.Atoi(e.Key()[strings.LastIndexByte(e.Key(), '.')+1:])
		if err != nil || r < 0 || r >= len(j.scored.recs) || bad != nil {
			return nil
		}
		if err := json.Unmarshal(e.Value(), &j.scored.recs[r]); err != nil {
			bad = fmt.Errorf("decoding %s: %w", e.Key(), err)
			return nil
		}
		j.scored.revs[r] = e.Revision()
		if j.scored.recs[r].complete() {
			j.scored.n++
		}
		return nil
	})
	if err != nil {
		return err
	}
	return bad
}
