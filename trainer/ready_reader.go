package trainer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
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
	ahead   int           // pages requested at once (Config.ReadAhead)
	backoff time.Duration // cap of the wait between two looks for a missing page
	log     *slog.Logger
	// maxRows is the planned row count of the plan's largest range: every range's memory
	// is sized for it, so that memory read into again fits whichever range comes next.
	maxRows int
}

func newReadyReader(ready batchGetter, names messages.Names, plan *messages.Plan, ahead int, backoff time.Duration, log *slog.Logger) *readyReader {
	rr := &readyReader{ready: ready, names: names, plan: plan, ahead: max(ahead, 1), backoff: backoff, log: log}
	for _, r := range plan.Ranges {
		rr.maxRows = max(rr.maxRows, int(r.Rows))
	}
	return rr
}

// Read returns range rng of read pass pass once its last page is in READY, in reuse's
// memory when reuse is not nil (a range already trained on). Its pages come from pages,
// which asks for them ahead, or, when pages is nil, one at a time. It only returns early
// when ctx ends or a page contradicts the plan; bus errors are retried, since a restarting
// NATS server is a pause, not a failure.
func (rr *readyReader) Read(ctx context.Context, pages *pageStream, pass, rng int, reuse *rangeRows) (*rangeRows, error) {
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
		var data []byte
		var err error
		if pages != nil {
			data, err = pages.get(id)
		} else {
			data, err = rr.page(ctx, id)
		}
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
			if pages != nil {
				pages.rangeRead(pass, rng, page)
			}
			rr.log.Debug("range read", "pass", pass, "range", rng, "pages", out.Pages, "rows", out.rows(),
				"seconds", time.Since(began).Seconds())
			return out, nil
		}
	}
}

// plannedPages is how many pages the plan expects range rng to have, at least 1: pages past
// it are not requested ahead, so that a range's end costs no request that is bound to miss.
// (A live table may hold more; those pages are read one at a time.)
func (rr *readyReader) plannedPages(rng int) int {
	rows := rr.plan.Ranges[rng].Rows
	if rr.plan.PageRows <= 0 || rows <= 0 {
		return 1
	}
	return int((rows + int64(rr.plan.PageRows) - 1) / int64(rr.plan.PageRows))
}

// pageStream keeps up to the reader's read-ahead direct gets in flight, of the pages the
// reader will decode next in the order it decodes them: a range's planned pages, then the
// next range's, so that the bus serves the next pages, across range ends too, while the
// reader decodes one. A page the stream did not ask for (past a range's planned count), or
// whose get missed (not produced yet) or failed, is read by page, which waits and retries.
type pageStream struct {
	rr     *readyReader
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ranges func() (pass, rng int, ok bool) // the ranges to read, in order
	// The next page to ask for: page of (pass, rng), which has pages planned pages.
	pass, rng, page, pages int
	more                   bool
	queue                  []*pageGet // in flight, oldest first
}

type pageGet struct {
	pass, rng, page int
	done            chan struct{}
	data            []byte
	err             error
}

// stream starts a page stream over the ranges ranges yields, in order; stop ends it.
func (rr *readyReader) stream(ctx context.Context, ranges func() (pass, rng int, ok bool)) *pageStream {
	sctx, cancel := context.WithCancel(ctx)
	s := &pageStream{rr: rr, ctx: sctx, cancel: cancel, ranges: ranges, queue: make([]*pageGet, 0, rr.ahead)}
	s.nextRange()
	return s
}

// oneRange is a stream's ranges for reading range rng of pass pass alone.
func oneRange(pass, rng int) func() (int, int, bool) {
	done := false
	return func() (int, int, bool) {
		if done {
			return 0, 0, false
		}
		done = true
		return pass, rng, true
	}
}

func (s *pageStream) nextRange() {
	s.pass, s.rng, s.more = s.ranges()
	if s.more && (s.rng < 0 || s.rng >= len(s.rr.plan.Ranges)) {
		s.more = false // Read reports the bad range
	}
	if s.more {
		s.page, s.pages = 0, s.rr.plannedPages(s.rng)
	}
}

// get returns page id.Page of the range being read.
func (s *pageStream) get(id messages.BatchID) ([]byte, error) {
	s.request(s.rr.ahead)
	if len(s.queue) > 0 {
		if q := s.queue[0]; q.pass == id.Pass && q.rng == id.Range && q.page == id.Page {
			s.queue = s.queue[1:]
			select {
			case <-q.done:
			case <-s.ctx.Done():
				return nil, s.ctx.Err()
			}
			if q.err == nil {
				return q.data, nil
			}
		}
	}
	return s.rr.page(s.ctx, id)
}

// rangeRead drops what is left in flight of the range just read, whose last page was last:
// pages the plan expected but the range turned out not to have.
func (s *pageStream) rangeRead(pass, rng, last int) {
	for len(s.queue) > 0 {
		q := s.queue[0]
		if q.pass != pass || q.rng != rng || q.page <= last {
			return
		}
		s.queue = s.queue[1:]
	}
}

// request asks for pages in order until room are in flight.
func (s *pageStream) request(room int) {
	for len(s.queue) < room && s.more {
		q := &pageGet{pass: s.pass, rng: s.rng, page: s.page, done: make(chan struct{})}
		subject := s.rr.names.ReadySubject(messages.BatchID{JobID: s.rr.plan.JobID, Pass: s.pass, Range: s.rng, Page: s.page})
		s.wg.Go(func() {
			defer close(q.done)
			msg, err := s.rr.ready.GetLastMsgForSubject(s.ctx, subject)
			if err == nil {
				q.data = msg.Data
			}
			q.err = err
		})
		s.queue = append(s.queue, q)
		if s.page++; s.page >= s.pages {
			s.nextRange()
		}
	}
}

// stop cancels the gets still in flight and waits for them.
func (s *pageStream) stop() {
	s.cancel()
	s.wg.Wait()
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
