package bus

import (
	"context"
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"pgtrain/messages"
)

func TestPutPlanIsIdempotentForTheSamePlanOnly(t *testing.T) {
	ctx := context.Background()
	nc := connectTest(t)
	b, err := Ensure(ctx, nc, Limits{ReadyMaxBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	p := &messages.Plan{JobID: "iris-0001", Table: "iris", PageRows: 100}
	if err := PutPlan(ctx, b.State, p); err != nil {
		t.Fatal(err)
	}
	// A retry whose first acknowledgement was lost finds its own plan.
	if err := PutPlan(ctx, b.State, p); err != nil {
		t.Fatalf("storing the same plan again: %v, want nil", err)
	}
	other := &messages.Plan{JobID: "iris-0001", Table: "iris", PageRows: 200}
	if err := PutPlan(ctx, b.State, other); !errors.Is(err, jetstream.ErrKeyExists) {
		t.Fatalf("storing another plan under the same id: %v, want ErrKeyExists", err)
	}
	got, err := GetPlan(ctx, b.State, p.JobID)
	if err != nil {
		t.Fatal(err)
	}
	if got.PageRows != 100 {
		t.Errorf("stored plan has page rows %d, want the first plan's 100", got.PageRows)
	}
}
