package trainer

import (
	"context"
	"sync/atomic"

	"pgtrain/messages"
)

// prefetcher reads ranges ahead of the model, in the order the model will consume them,
// from a starting (epoch, position) to the end of the job. A range counts as held from the
// moment the prefetcher starts reading it until the consumer releases it, and at most
// limit ranges are held at once: that, not the channel, is what bounds memory, since a
// range is only as large as the planner made it but a channel slot would not count the one
// being read. A released range's memory is read into again, so that a job of any length
// allocates at most limit ranges' worth of rows (and collects none).
type prefetcher struct {
	out  chan prefetched
	sem  chan struct{}
	free chan *rangeRows
	done chan struct{}

	held    atomic.Int64
	maxHeld atomic.Int64
}

type prefetched struct {
	rows *rangeRows
	err  error
}

// startPrefetch begins reading at position pos of epoch's order; limit is Prefetch+1 (the
// range being trained on plus those read ahead). It stops when ctx ends.
func startPrefetch(ctx context.Context, rr *readyReader, plan *messages.Plan, epoch, pos, limit int) *prefetcher {
	p := &prefetcher{
		out:  make(chan prefetched, limit),
		sem:  make(chan struct{}, limit),
		free: make(chan *rangeRows, limit),
		done: make(chan struct{}),
	}
	// The page stream walks the same order as the loop below, ahead of it.
	se, si, order := epoch, pos, plan.EpochOrder(epoch)
	pages := rr.stream(ctx, func() (pass, rng int, ok bool) {
		for se < plan.Spec.Epochs && si >= len(order) {
			if se++; se < plan.Spec.Epochs {
				si, order = 0, plan.EpochOrder(se)
			}
		}
		if se >= plan.Spec.Epochs {
			return 0, 0, false
		}
		si++
		return plan.PassOf(se), order[si-1], true
	})
	go func() {
		defer close(p.done)
		defer close(p.out)
		defer pages.stop()
		for e := epoch; e < plan.Spec.Epochs; e++ {
			order := plan.EpochOrder(e)
			for i := pos; i < len(order); i++ {
				select {
				case p.sem <- struct{}{}:
				case <-ctx.Done():
					return
				}
				n := p.held.Add(1)
				for m := p.maxHeld.Load(); n > m && !p.maxHeld.CompareAndSwap(m, n); m = p.maxHeld.Load() {
				}
				var reuse *rangeRows
				select {
				case reuse = <-p.free:
				default:
				}
				r, err := rr.Read(ctx, pages, plan.PassOf(e), order[i], reuse)
				if err != nil {
					p.release(nil)
					if ctx.Err() == nil {
						p.out <- prefetched{err: err} // never blocks: a slot per held range
					}
					return
				}
				r.Epoch, r.Pos = e, i
				p.out <- prefetched{rows: r}
			}
			pos = 0
		}
	}()
	return p
}

// next returns the next range in order, or ok=false when the job has no more ranges.
func (p *prefetcher) next(ctx context.Context) (r *rangeRows, ok bool, err error) {
	select {
	case it, open := <-p.out:
		if !open {
			return nil, false, ctx.Err()
		}
		return it.rows, it.err == nil, it.err
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
}

// release hands back the slot of a range the consumer is done with, and r's memory (when
// not nil) for a later range: the consumer keeps no slice of r.
func (p *prefetcher) release(r *rangeRows) {
	if r != nil {
		select {
		case p.free <- r:
		default:
		}
	}
	p.held.Add(-1)
	<-p.sem
}

// wait blocks until the prefetch goroutine has exited (after its context ended).
func (p *prefetcher) wait() { <-p.done }
