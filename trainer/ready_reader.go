package trainer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"pgtrain/internal/workloop"
	"pgtrain/messages"
)

// batchGetter is the one READY call the reader makes; jetstream.Stream implements it (as a
// direct get when the stream allows it).
type batchGetter interface {
	GetLastMsgForSubject(ctx context.Context, subject string) (*jetstream.RawStreamMsg, error)
}

// rangeRows is one whole range of one read pass: its rows in key order (pages concatenated).
type rangeRows struct {
	Epoch int // the epoch it is read for
	Pos   int // its index in plan.EpochOrder(Epoch)
	Range int
	Pass  int
	Pages int
	Keys  []int64
	X, Y  []float32 // row-major, InputDim and LabelDim floats per row
	W     []float32 // a sample weight per row when the plan has a sample weight column
}

func (r *rangeRows) rows() int { return len(r.Keys) }

// readyReader reads the pages of one range from READY, in page order, waiting for pages that
// are not there yet.
type readyReader struct {
	ready   batchGetter
	names   messages.Names
	plan    *messages.Plan
	backoff time.Duration // cap of the wait between two looks for a missing page
	log     *slog.Logger
	// maxRows is the planned row count of the plan's largest range: every range's memory
	// is sized for it, so that memory read into again fits whichever range comes next.
	maxRows int
}

func newReadyReader(ready batchGetter, names messages.Names, plan *messages.Plan, backoff time.Duration, log *slog.Logger) *readyReader {
	rr := &readyReader{ready: ready, names: names, plan: plan, backoff: backoff, log: log}
	for _, r := range plan.Ranges {
		rr.maxRows = max(rr.maxRows, int(r.Rows))
	}
	return rr
}

// Read returns range rng of read pass pass once its last page is in READY, in reuse's
// memory when reuse is not nil (a range already trained on). It only returns early when
// ctx ends or a page contradicts the plan; bus errors are retried, since a restarting NATS
// server is a pause, not a failure.
func (rr *readyReader) Read(ctx context.Context, pass, rng int, reuse *rangeRows) (*rangeRows, error) {
	if rng < 0 || rng >= len(rr.plan.Ranges) {
		return nil, fmt.Errorf("range %d of a plan with %d ranges: %w", rng, len(rr.plan.Ranges), ErrBadPlan)
	}
	bounds := rr.plan.Ranges[rng]
	out := &rangeRows{Range: rng, Pass: pass}
	if reuse != nil {
		*out = rangeRows{Range: rng, Pass: pass, Keys: reuse.Keys[:0], X: reuse.X[:0], Y: reuse.Y[:0], W: reuse.W[:0]}
	}
	if bounds.Rows > 0 {
		// Ranges differ by a few rows (the planner cuts them at histogram bucket edges).
		// Sized for the range at hand, a buffer read into again would be too small for a
		// slightly larger range, and append would replace it by one a quarter larger: the
		// trainer's memory would creep up with the number of ranges read, that is with the
		// table's size. Sized for the largest, it is allocated once per held range. (A live
		// table may still hold a few more rows than planned; append takes care of those.)
		rows := max(int(bounds.Rows), rr.maxRows)
		out.Keys = slices.Grow(out.Keys, rows)
		out.X = slices.Grow(out.X, rows*rr.plan.InputDim)
		out.Y = slices.Grow(out.Y, rows*rr.plan.LabelDim)
		if rr.plan.WeightDim() > 0 {
			out.W = slices.Grow(out.W, rows)
		}
	}
	if rr.plan.WeightDim() == 0 {
		out.W = nil
	}
	prevKey := int64(0)
	began := time.Now()
	for page := 0; ; page++ {
		id := messages.BatchID{JobID: rr.plan.JobID, Pass: pass, Range: rng, Page: page}
		data, err := rr.page(ctx, id)
		if err != nil {
			return nil, err
		}
		// Decoded straight onto the range's rows: no copy of each page.
		before := len(out.Keys)
		b := messages.ReadyBatch{Keys: out.Keys, X: out.X, Y: out.Y, W: out.W}
		if err := messages.DecodeReadyAppend(data, &b); err != nil {
			return nil, fmt.Errorf("decoding %s: %w: %w", rr.names.ReadySubject(id), ErrBadBatch, err)
		}
		if b.BatchID != id {
			return nil, fmt.Errorf("subject %s holds batch %s: %w", rr.names.ReadySubject(id), b.BatchID, ErrBadBatch)
		}
		keys := b.Keys[before:]
		if len(keys) > 0 && (b.InputDim != rr.plan.InputDim || b.LabelDim != rr.plan.LabelDim) {
			return nil, fmt.Errorf("batch %s has widths %d/%d, the plan %d/%d: %w",
				id, b.InputDim, b.LabelDim, rr.plan.InputDim, rr.plan.LabelDim, ErrBadBatch)
		}
		if weighted := rr.plan.WeightDim() > 0; weighted != (b.W != nil) {
			return nil, fmt.Errorf("batch %s: sample weights %v, the plan's sample weight column %v: %w", id, b.W != nil, weighted, ErrBadBatch)
		}
		// A typed key arrives as its hash, which has no order: its pages are checked by the
		// range's checksum alone (a page read twice or out of place changes the count).
		for i, k := range keys {
			if rr.plan.KeyColumns != nil {
				break
			}
			if k < bounds.Lo || k > bounds.Hi {
				return nil, fmt.Errorf("batch %s: key %d outside range [%d, %d]: %w", id, k, bounds.Lo, bounds.Hi, ErrBadBatch)
			}
			// Keyset pages come in strictly increasing key order; anything else means a
			// page was produced twice or out of place, and the checksum would not tell
			// which row is wrong.
			if (before > 0 || i > 0) && k <= prevKey {
				return nil, fmt.Errorf("batch %s: key %d after %d: %w", id, k, prevKey, ErrBadBatch)
			}
			prevKey = k
		}
		out.Keys, out.X, out.Y, out.W = b.Keys, b.X, b.Y, b.W
		out.Pages = page + 1
		if b.Last {
			rr.log.Debug("range read", "pass", pass, "range", rng, "pages", out.Pages, "rows", out.rows(),
				"seconds", time.Since(began).Seconds())
			return out, nil
		}
	}
}

// page fetches one batch's bytes by subject, polling with a growing (capped) backoff while
// it is not there.
func (rr *readyReader) page(ctx context.Context, id messages.BatchID) ([]byte, error) {
	subject := rr.names.ReadySubject(id)
	backoff := workloop.Backoff{Min: time.Millisecond, Max: rr.backoff}
	var lastErr error
	for {
		msg, err := rr.ready.GetLastMsgForSubject(ctx, subject)
		if err == nil {
			return msg.Data, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !errors.Is(err, jetstream.ErrMsgNotFound) && (lastErr == nil || lastErr.Error() != err.Error()) {
			rr.log.Warn("reading a ready batch, will retry", "subject", subject, "error", err)
		}
		lastErr = err
		if !backoff.Wait(ctx) {
			return nil, ctx.Err()
		}
	}
}
