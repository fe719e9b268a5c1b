package bus

import (
	"context"
	"errors"
	"testing"
	"time"

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

// A stored plan wakes the watchers; other keys of the bucket do not, and stop ends the
// watch.
func TestWatchPlansSignalsEachNewPlan(t *testing.T) {
	ctx := context.Background()
	nc := connectTest(t)
	b, err := Ensure(ctx, nc, Limits{ReadyMaxBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	// A plan stored before the watch starts is not news.
	if err := PutPlan(ctx, b.State, &messages.Plan{JobID: "old-0001", Table: "t", PageRows: 1}); err != nil {
		t.Fatal(err)
	}
	wake, stop, err := WatchPlans(ctx, b.State)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	quiet := func(what string) {
		t.Helper()
		select {
		case <-wake:
			t.Fatalf("a signal after %s", what)
		case <-time.After(200 * time.Millisecond):
		}
	}
	quiet("the watch started")
	if _, err := b.State.Put(ctx, "job.new-0001", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	quiet("another key was written")
	for _, id := range []string{"new-0001", "new-0002"} {
		if err := PutPlan(ctx, b.State, &messages.Plan{JobID: id, Table: "t", PageRows: 1}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-wake:
		case <-time.After(5 * time.Second):
			t.Fatalf("no signal for the plan of %s", id)
		}
	}
}
