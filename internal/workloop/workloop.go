// Package workloop holds the small loops every worker role shares: a wait that a
// cancelled context cuts short, the doubling backoff between retries, and the periodic
// progress summary a role logs while it works and once when it stops.
package workloop

import (
	"context"
	"time"
)

// Sleep waits d or until ctx is done; it reports whether the full wait passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Backoff is the wait between retries of one operation: Min first, doubling after each wait
// up to Max, until Reset after a success. It adds no jitter, as the retry loops it replaced
// did not.
type Backoff struct {
	Min, Max time.Duration
	next     time.Duration // 0 means Min
}

// Next is the wait the next call to Wait makes (for a "retry_in" log attribute).
func (b *Backoff) Next() time.Duration {
	if b.next == 0 {
		return b.Min
	}
	return b.next
}

// Wait waits Next() or until ctx is done, doubles the following wait up to Max, and reports
// whether the full wait passed.
func (b *Backoff) Wait(ctx context.Context) bool {
	d := b.Next()
	b.next = min(2*d, b.Max)
	return Sleep(ctx, d)
}

// Reset makes the next wait Min again, after an attempt succeeded.
func (b *Backoff) Reset() { b.next = 0 }

// Rate is n per second over d, to one decimal (0 for an empty interval).
func Rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(int64(float64(n)/d.Seconds()*10)) / 10
}

// Summarize calls report every interval while the counters change, with the rows/s since
// the last report, and once more with final set (and the rows/s over the whole run) when
// the returned stop function is called; stop returns after that last report.
func Summarize[S comparable](every time.Duration, stats func() S, rows func(S) int64,
	report func(s S, rowsPerSecond float64, final bool)) (stop func()) {
	done := make(chan struct{})
	stopped := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(stopped)
		t := time.NewTicker(every)
		defer t.Stop()
		last, lastAt := stats(), start
		for {
			select {
			case <-done:
				s := stats()
				report(s, Rate(rows(s), time.Since(start)), true)
				return
			case now := <-t.C:
				if s := stats(); s != last {
					report(s, Rate(rows(s)-rows(last), now.Sub(lastAt)), false)
					last = s
				}
				lastAt = now
			}
		}
	}()
	return func() { close(done); <-stopped }
}
