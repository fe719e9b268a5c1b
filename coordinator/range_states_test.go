package coordinator

import (
	"context"
	"errors"
	"testing"
	"time"

	"pgtrain/coordinator/client"
	"pgtrain/messages"
)

// The strip follows a range through planned, leased (by its fetcher), fetched and trained,
// and an expired lease shows as planned again.
func TestRangeStates(t *testing.T) {
	_, r, p := leaseJob(t)
	ctx := context.Background()
	order := p.EpochOrder(0)
	type want struct {
		state  string
		worker string
	}
	check := func(step string, epoch int, wants map[int]want) {
		t.Helper()
		rs, err := r.cl.Ranges(ctx, p.JobID)
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if rs.JobID != p.JobID || rs.Epoch != epoch || rs.Pass != p.PassOf(epoch) || len(rs.Ranges) != len(p.Ranges) {
			t.Fatalf("%s: job %s epoch %d pass %d with %d ranges, want epoch %d of %d ranges", step, rs.JobID, rs.Epoch, rs.Pass, len(rs.Ranges), epoch, len(p.Ranges))
		}
		for i, got := range rs.Ranges {
			w, ok := wants[i]
			if !ok {
				w = want{state: messages.RangePlanned}
			}
			if got.Index != i || got.State != w.state || got.Worker != w.worker || got.Rows != p.Ranges[i].Rows ||
				got.Validation != (i >= p.TrainingRanges()) {
				t.Errorf("%s: range %d is %+v, want %s by %q", step, i, got, w.state, w.worker)
			}
		}
	}
	check("submitted", 0, nil)

	workers := []string{"w1", "w2", "w3"}
	leases := make([]*messages.Lease, len(workers))
	for i, w := range workers {
		leases[i] = mustLease(t, r.cl, w)
	}
	leased := map[int]want{}
	for i, w := range workers {
		leased[order[i]] = want{messages.RangeLeased, w}
	}
	check("leased", 0, leased)

	if _, err := r.cl.ReportLease(ctx, leases[0].ID, messages.LeaseProgress{WorkerID: "w1", NextPage: 1, LastKey: 99, Rows: 100, Done: true}); err != nil {
		t.Fatal(err)
	}
	leased[order[0]] = want{state: messages.RangeFetched}
	check("one fetched", 0, leased)

	if _, err := r.cl.ClaimJob(ctx, "trainer-1"); err != nil {
		t.Fatal(err)
	}
	if err := r.cl.ReportTrainer(ctx, p.JobID, messages.TrainerProgress{TrainerID: "trainer-1", Epoch: 0, Consumed: 1, Rows: 100}); err != nil {
		t.Fatal(err)
	}
	leased[order[0]] = want{state: messages.RangeTrained}
	check("one trained", 0, leased)

	// w2 and w3 stop renewing: their ranges are up for grabs again.
	r.clock.advance(2 * time.Second)
	check("leases expired", 0, map[int]want{order[0]: {state: messages.RangeTrained}})

	all := map[int]want{}
	for i := range p.Ranges {
		all[i] = want{state: messages.RangeTrained}
	}
	if err := r.cl.ReportTrainer(ctx, p.JobID, messages.TrainerProgress{TrainerID: "trainer-1", Epoch: 0, Consumed: len(p.Ranges), Rows: 1000}); err != nil {
		t.Fatal(err)
	}
	check("epoch read", 0, all)
	if err := r.cl.ReportTrainer(ctx, p.JobID, messages.TrainerProgress{TrainerID: "trainer-1", Epoch: 1, Consumed: 0}); err != nil {
		t.Fatal(err)
	}
	check("second epoch", 1, nil) // its pass is read again, from the start
	if err := r.cl.ReportTrainer(ctx, p.JobID, messages.TrainerProgress{TrainerID: "trainer-1", Epoch: p.Spec.Epochs, Done: true}); err != nil {
		t.Fatal(err)
	}
	check("done", p.Spec.Epochs-1, all)

	if _, err := r.cl.Ranges(ctx, "no-such-job"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("unknown job: %v, want ErrNotFound", err)
	}
}
