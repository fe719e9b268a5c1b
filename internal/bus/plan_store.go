package bus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"pgtrain/messages"
)

// ErrNoPlan is returned by GetPlan when the job has no plan (yet).
var ErrNoPlan = errors.New("no plan for this job")

// ErrBadPlan is returned by GetPlan when the stored plan cannot be decoded: reading it again
// will not help.
var ErrBadPlan = errors.New("the stored plan cannot be decoded")

func planKey(jobID string) string { return "plan." + jobID }

// PutPlan stores a job's plan once. Storing the same plan again succeeds, so a put retried
// after a lost acknowledgement finds its own plan; a different plan under the job's id fails
// with jetstream.ErrKeyExists.
func PutPlan(ctx context.Context, kv jetstream.KeyValue, p *messages.Plan) error {
	b, err := messages.EncodePlan(p)
	if err != nil {
		return err
	}
	_, err = kv.Create(ctx, planKey(p.JobID), b)
	if errors.Is(err, jetstream.ErrKeyExists) {
		if e, gerr := kv.Get(ctx, planKey(p.JobID)); gerr == nil && bytes.Equal(e.Value(), b) {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("storing the plan of job %s: %w", p.JobID, err)
	}
	return nil
}

// GetPlan reads a job's plan; every role reads plans from here, not from the coordinator.
func GetPlan(ctx context.Context, kv jetstream.KeyValue, jobID string) (*messages.Plan, error) {
	e, err := kv.Get(ctx, planKey(jobID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("job %s: %w", jobID, ErrNoPlan)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the plan of job %s: %w", jobID, err)
	}
	p, err := messages.DecodePlan(e.Value())
	if err != nil {
		return nil, fmt.Errorf("job %s: %w: %w", jobID, ErrBadPlan, err)
	}
	return p, nil
}

// DeletePlan removes a job's plan (for a deleted job); a plan that is not there is no error.
func DeletePlan(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue, jobID string) error {
	if err := PurgeKeys(ctx, js, kv, planKey(jobID)); err != nil {
		return fmt.Errorf("deleting the plan of job %s: %w", jobID, err)
	}
	return nil
}

// PurgeKeys removes the keys of a bucket that match filter (a key, or a pattern with the
// subject wildcards * and >) with their history, and leaves no delete marker: it purges the
// bucket's stream by subject. KeyValue.Purge keeps a marker per key, which a deleted job's
// thousands of task records would leave behind for ever.
func PurgeKeys(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue, filter string) error {
	// The stream and subject names of a bucket are fixed by the KV design (ADR-8).
	s, err := js.Stream(ctx, "KV_"+kv.Bucket())
	if err != nil {
		return fmt.Errorf("purging %s: looking up the bucket's stream: %w", filter, err)
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSubject("$KV."+kv.Bucket()+"."+filter)); err != nil {
		return fmt.Errorf("purging %s: %w", filter, err)
	}
	return nil
}

// WatchPlans signals on the returned channel whenever a plan is stored (a new job), so an
// idle worker asks for work at once rather than at its next poll: the poll interval was
// part of every job's time to its first batch. The channel holds at most one signal. If the
// watch cannot start (or ends, as when the server restarts) the channel stays quiet and
// the worker's polling alone finds new jobs, as before. stop ends the watch.
func WatchPlans(ctx context.Context, kv jetstream.KeyValue) (wake <-chan struct{}, stop func(), err error) {
	ch := make(chan struct{}, 1)
	w, err := kv.Watch(ctx, planKey("*"), jetstream.UpdatesOnly(), jetstream.MetaOnly())
	if err != nil {
		return ch, func() {}, fmt.Errorf("watching for new plans: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range w.Updates() {
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}()
	return ch, func() {
		_ = w.Stop()
		// The client closes the updates once the unsubscription is processed.
		select {
		case <-done:
		case <-time.After(time.Second):
		}
	}, nil
}
