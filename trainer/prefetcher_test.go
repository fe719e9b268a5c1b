package trainer

import (
	"context"
	"testing"
	"time"

	"pgtrain/internal/testenv"
)

func TestPrefetchHoldsAtMostPrefetchPlusOneRanges(t *testing.T) {
	b := testBus(t)
	d := dataset{job: "prefetch", rangeRows: []int{10, 10, 10, 10, 10, 10, 10}, pageRows: 4, epochs: 2, batch: 4, seed: 3}
	p := d.plan()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, rb := range d.batches(p) {
		if err := publish(ctx, b, rb); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name     string
		prefetch int
	}{
		{name: "prefetch 1", prefetch: 1},
		{name: "prefetch 2", prefetch: 2},
		{name: "prefetch 4", prefetch: 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			limit := tc.prefetch + 1
			pctx, stop := context.WithCancel(ctx)
			defer stop()
			// Start in the middle of epoch 0 to read across the epoch boundary.
			pf := startPrefetch(pctx, newReadyReader(b.Ready, b.Names(), p, DefaultReadAhead, 5*time.Millisecond, testLog(t)), p, 0, 3, limit)
			defer pf.wait()
			// With every batch in READY and nobody consuming, the reader fills its quota...
			testenv.Eventually(t, 10*time.Second, "the reader to fill its quota", func() bool {
				return pf.held.Load() == int64(limit)
			})
			var got []int
			buffers := map[*int64]bool{} // the ranges' key arrays: reused, never more than the limit
			for e, pos := 0, 3; e < p.Spec.Epochs; e, pos = e+1, 0 {
				order := p.EpochOrder(e)
				for ; pos < len(order); pos++ {
					r, ok, err := pf.next(ctx)
					if err != nil || !ok {
						t.Fatalf("next: ok=%v err=%v", ok, err)
					}
					if r.Epoch != e || r.Pos != pos || r.Range != order[pos] || r.Pass != p.PassOf(e) || r.rows() != 10 {
						t.Fatalf("got epoch %d pos %d range %d pass %d (%d rows), want epoch %d pos %d range %d pass %d",
							r.Epoch, r.Pos, r.Range, r.Pass, r.rows(), e, pos, order[pos], p.PassOf(e))
					}
					// ...and never more while the consumer holds a range.
					if h := pf.held.Load(); h > int64(limit) {
						t.Fatalf("reader holds %d ranges, limit %d", h, limit)
					}
					got = append(got, r.Range)
					buffers[&r.Keys[:1][0]] = true
					pf.release(r)
				}
			}
			if _, ok, err := pf.next(ctx); ok || err != nil {
				t.Fatalf("after the last range: ok=%v err=%v, want the end", ok, err)
			}
			if m := pf.maxHeld.Load(); m != int64(limit) {
				t.Fatalf("the reader held at most %d ranges, want exactly the limit %d", m, limit)
			}
			if len(buffers) > limit {
				t.Fatalf("%d ranges read into %d arrays, want at most the limit %d", len(got), len(buffers), limit)
			}
			if len(got) != len(p.Ranges)*2-3 {
				t.Fatalf("read %d ranges, want %d", len(got), len(p.Ranges)*2-3)
			}
		})
	}
}

// Ranges differ in size (the planner cuts at histogram bucket edges): memory read into
// again must still fit the next range, or each larger range would cost a new allocation
// and the trainer's memory would grow with the number of ranges.
func TestPrefetchReusesMemoryAcrossRangesOfDifferentSizes(t *testing.T) {
	b := testBus(t)
	d := dataset{job: "prefetch-sizes", rangeRows: []int{9, 10, 40, 11, 39, 10, 38, 12}, pageRows: 4, epochs: 2, batch: 4, seed: 5}
	p := d.plan()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, rb := range d.batches(p) {
		if err := publish(ctx, b, rb); err != nil {
			t.Fatal(err)
		}
	}
	const limit = 2
	pf := startPrefetch(ctx, newReadyReader(b.Ready, b.Names(), p, DefaultReadAhead, 5*time.Millisecond, testLog(t)), p, 0, 0, limit)
	defer pf.wait()
	keys, xs := map[*int64]bool{}, map[*float32]bool{}
	for range len(p.Ranges) * p.Spec.Epochs {
		r, ok, err := pf.next(ctx)
		if err != nil || !ok {
			t.Fatalf("next: ok=%v err=%v", ok, err)
		}
		if want := d.rangeRows[r.Range]; r.rows() != want {
			t.Fatalf("range %d: %d rows, want %d", r.Range, r.rows(), want)
		}
		keys[&r.Keys[:1][0]], xs[&r.X[:1][0]] = true, true
		pf.release(r)
	}
	if len(keys) > limit || len(xs) > limit {
		t.Fatalf("%d ranges read into %d key and %d feature arrays, want at most %d of each",
			len(p.Ranges)*p.Spec.Epochs, len(keys), len(xs), limit)
	}
}
