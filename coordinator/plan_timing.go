package coordinator

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// planTimer notes when each step of one planning ended, in seconds since planning began,
// and logs them in one debug line: where the time to a job's first batch goes before any
// worker can start. A nil timer notes nothing.
type planTimer struct {
	start time.Time
	mu    sync.Mutex
	attrs []any
}

func newPlanTimer() *planTimer { return &planTimer{start: time.Now()} }

// done notes that step ended now, and how long it took since began (the zero time: no
// duration, the step ran from the previous one).
func (t *planTimer) done(step string, began time.Time) {
	if t == nil {
		return
	}
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.attrs = append(t.attrs, step+"_at_s", now.Sub(t.start).Seconds())
	if !began.IsZero() {
		t.attrs = append(t.attrs, step+"_s", now.Sub(began).Seconds())
	}
}

func (t *planTimer) log(log *slog.Logger, jobID string) {
	if t == nil || !log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	log.Debug("planning timeline", append([]any{"job_id", jobID}, t.attrs...)...)
}
