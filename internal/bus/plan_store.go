package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"pgtrain/messages"
)

// ErrNoPlan is returned by GetPlan when the job has no plan (yet).
var ErrNoPlan = errors.New("no plan for this job")

func planKey(jobID string) string { return "plan." + jobID }

// PutPlan stores a job's plan once; a second write for the same job fails.
func PutPlan(ctx context.Context, kv jetstream.KeyValue, p *messages.Plan) error {
	b, err := messages.EncodePlan(p)
	if err != nil {
		return err
	}
	if _, err := kv.Create(ctx, planKey(p.JobID), b); err != nil {
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
	return messages.DecodePlan(e.Value())
}
