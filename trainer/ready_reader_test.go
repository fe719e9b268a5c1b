package trainer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"pgtrain/internal/bus"
	"pgtrain/messages"
)

func TestReadyReaderReadsPagesInOrderWhateverTheArrival(t *testing.T) {
	b := testBus(t)
	cases := []struct {
		name        string
		ahead       int
		plannedRows int64 // range 1's rows in the plan; 0: as many as it has
	}{
		{name: "one page at a time", ahead: 1},
		{name: "default read-ahead", ahead: DefaultReadAhead},
		{name: "largest read-ahead", ahead: MaxReadAhead},
		// A live table grew after planning: the pages past the plan's count are read too.
		{name: "more pages than planned", ahead: DefaultReadAhead, plannedRows: 4},
		// It shrank: the pages the plan expects past the last one are never there.
		{name: "fewer pages than planned", ahead: DefaultReadAhead, plannedRows: 40},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := dataset{job: fmt.Sprintf("reader-%d", i), rangeRows: []int{5, 23, 4}, pageRows: 4, epochs: 1, batch: 8, seed: 1}
			p := d.plan()
			all := d.batches(p)
			if tc.plannedRows > 0 {
				p.Ranges[1].Rows = tc.plannedRows
			}
			readPagesInAnyOrder(t, b, p, all, tc.ahead)
		})
	}
}

// readPagesInAnyOrder publishes range 1's pages last page first, half of them after the
// read has begun, and checks that the reader returns them in key order.
func readPagesInAnyOrder(t *testing.T, b *bus.Bus, p *messages.Plan, all []*messages.ReadyBatch, ahead int) {
	// Range 1's pages, published last page first, half of them after the read has begun.
	var pages []*messages.ReadyBatch
	for _, rb := range all {
		if rb.Range == 1 {
			pages = append(pages, rb)
		}
	}
	slices.Reverse(pages)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, rb := range pages[:3] {
		if err := publish(ctx, b, rb); err != nil {
			t.Fatal(err)
		}
	}
	rr := newReadyReader(b.Ready, b.Names(), p, ahead, 5*time.Millisecond, testLog(t))
	type result struct {
		r   *rangeRows
		err error
	}
	got := make(chan result, 1)
	go func() {
		pages := rr.stream(ctx, oneRange(0, 1))
		defer pages.stop()
		r, err := rr.Read(ctx, pages, 0, 1, nil)
		got <- result{r, err}
	}()
	for _, rb := range pages[3:] {
		if err := publish(ctx, b, rb); err != nil {
			t.Fatal(err)
		}
	}
	res := <-got
	if res.err != nil {
		t.Fatal(res.err)
	}
	if res.r.Pages != len(pages) || res.r.rows() != 23 {
		t.Fatalf("read %d pages and %d rows, want %d and 23", res.r.Pages, res.r.rows(), len(pages))
	}
	for i, k := range res.r.Keys {
		if want := keyOf(5 + i); k != want {
			t.Fatalf("row %d has key %d, want %d (key order)", i, k, want)
		}
		x, y := row(k)
		if !slices.Equal(res.r.X[i*testInputDim:(i+1)*testInputDim], x[:]) || res.r.Y[i] != y {
			t.Fatalf("row %d (key %d): features or label do not belong to the key", i, k)
		}
	}
}

func TestReadyReaderRefusesBatchesThatContradictThePlan(t *testing.T) {
	b := testBus(t)
	good := func(job string) (*messages.Plan, *messages.ReadyBatch) {
		d := dataset{job: job, rangeRows: []int{3, 3}, pageRows: 3, epochs: 1, batch: 2, seed: 1}
		p := d.plan()
		return p, d.batches(p)[1] // range 1, its only page
	}
	tests := []struct {
		name    string
		mangle  func(*messages.ReadyBatch)
		wantErr error
	}{
		{name: "good", mangle: func(*messages.ReadyBatch) {}},
		{name: "other widths", wantErr: ErrBadBatch, mangle: func(rb *messages.ReadyBatch) {
			rb.InputDim, rb.X = 1, rb.X[:len(rb.Keys)]
		}},
		{name: "key below the range", wantErr: ErrBadBatch, mangle: func(rb *messages.ReadyBatch) { rb.Keys[0] = keyOf(0) }},
		{name: "keys not ascending", wantErr: ErrBadBatch, mangle: func(rb *messages.ReadyBatch) { rb.Keys[1], rb.Keys[2] = rb.Keys[2], rb.Keys[1] }},
		{name: "payload of another batch", wantErr: ErrBadBatch, mangle: func(rb *messages.ReadyBatch) { rb.Page = 7 }},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			job := "bad" + string(rune('a'+i))
			p, rb := good(job)
			subject := b.Names().ReadySubject(rb.BatchID)
			tc.mangle(rb)
			data, err := messages.EncodeReady(rb)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := b.JS.Publish(ctx, subject, data); err != nil {
				t.Fatal(err)
			}
			_, err = newReadyReader(b.Ready, b.Names(), p, DefaultReadAhead, 5*time.Millisecond, testLog(t)).Read(ctx, nil, 0, 1, nil)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("Read: err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestReadyReaderWaitsUntilCancelled(t *testing.T) {
	b := testBus(t)
	p := dataset{job: "never", rangeRows: []int{3}, pageRows: 3, epochs: 1, batch: 2}.plan()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := newReadyReader(b.Ready, b.Names(), p, DefaultReadAhead, 5*time.Millisecond, testLog(t)).Read(ctx, nil, 0, 0, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("reading a range nobody publishes: err = %v, want the context's deadline", err)
	}
}

// gatedGetter is READY counting the gets in flight; each get waits until want of them are
// in flight (or a while has passed), so that a reader that keeps them in flight shows it.
type gatedGetter struct {
	batchGetter
	want int

	mu       sync.Mutex
	inFlight int
	most     int
	open     bool
	reached  chan struct{}
}

func (g *gatedGetter) GetLastMsgForSubject(ctx context.Context, subject string) (*jetstream.RawStreamMsg, error) {
	g.mu.Lock()
	g.inFlight++
	g.most = max(g.most, g.inFlight)
	if g.inFlight == g.want && !g.open {
		g.open = true
		close(g.reached)
	}
	g.mu.Unlock()
	select {
	case <-g.reached:
	case <-time.After(5 * time.Second):
	}
	defer func() {
		g.mu.Lock()
		g.inFlight--
		g.mu.Unlock()
	}()
	return g.batchGetter.GetLastMsgForSubject(ctx, subject)
}

func TestReadyReaderKeepsReadAheadGetsInFlight(t *testing.T) {
	b := testBus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i, ahead := range []int{1, 4} {
		d := dataset{job: fmt.Sprintf("ahead-%d", i), rangeRows: []int{5, 23, 4}, pageRows: 4, epochs: 1, batch: 8, seed: 1}
		p := d.plan()
		for _, rb := range d.batches(p) {
			if err := publish(ctx, b, rb); err != nil {
				t.Fatal(err)
			}
		}
		g := &gatedGetter{batchGetter: b.Ready, want: ahead, reached: make(chan struct{})}
		rr := newReadyReader(g, b.Names(), p, ahead, 5*time.Millisecond, testLog(t))
		// Ranges 1 then 2: the stream runs on from one range into the next.
		next := 1
		pages := rr.stream(ctx, func() (int, int, bool) { next++; return 0, next - 1, next <= 3 })
		for _, want := range []struct{ rng, rows int }{{1, 23}, {2, 4}} {
			r, err := rr.Read(ctx, pages, 0, want.rng, nil)
			if err != nil {
				t.Fatal(err)
			}
			if r.rows() != want.rows {
				t.Fatalf("read-ahead %d: range %d has %d rows, want %d", ahead, want.rng, r.rows(), want.rows)
			}
		}
		pages.stop()
		if g.most != ahead {
			t.Fatalf("read-ahead %d: at most %d gets in flight, want %d", ahead, g.most, ahead)
		}
	}
}
