package coordinator

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"pgtrain/messages"
)

// busTimeout bounds the stream and consumer lookups of GET /v1/bus.
const busTimeout = 5 * time.Second

// busStatus reads the streams' and the preprocessors' consumer's state from JetStream.
func (c *Coordinator) busStatus(ctx context.Context) (*messages.BusStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, busTimeout)
	defer cancel()
	st := &messages.BusStatus{Version: messages.SchemaVersion}
	js := c.bus.JetStream()
	// Looking a stream up reads its info: CachedInfo is current.
	rawStream, err := js.Stream(ctx, c.names.RawStream())
	if err != nil {
		return nil, unavailable(fmt.Errorf("reading %s: %w", c.names.RawStream(), err))
	}
	scoreStream, err := js.Stream(ctx, c.names.ScoreStream())
	if err != nil {
		return nil, unavailable(fmt.Errorf("reading %s: %w", c.names.ScoreStream(), err))
	}
	readyStream, err := js.Stream(ctx, c.names.ReadyStream())
	if err != nil {
		return nil, unavailable(fmt.Errorf("reading %s: %w", c.names.ReadyStream(), err))
	}
	raw, score, ready := rawStream.CachedInfo(), scoreStream.CachedInfo(), readyStream.CachedInfo()
	for _, s := range []struct {
		out  *messages.StreamStatus
		name string
		msgs uint64
		b    uint64
		max  int64
		last uint64
	}{
		{&st.Raw, raw.Config.Name, raw.State.Msgs, raw.State.Bytes, raw.Config.MaxBytes, raw.State.LastSeq},
		{&st.Score, score.Config.Name, score.State.Msgs, score.State.Bytes, score.Config.MaxBytes, score.State.LastSeq},
		{&st.Ready, ready.Config.Name, ready.State.Msgs, ready.State.Bytes, ready.Config.MaxBytes, ready.State.LastSeq},
	} {
		*s.out = messages.StreamStatus{Name: s.name, Messages: s.msgs, Bytes: s.b, MaxBytes: s.max, LastSeq: s.last}
	}
	cons, err := rawStream.Consumer(ctx, messages.PreprocDurable)
	if err != nil {
		return nil, unavailable(fmt.Errorf("reading consumer %s: %w", messages.PreprocDurable, err))
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		return nil, unavailable(fmt.Errorf("reading consumer %s: %w", messages.PreprocDurable, err))
	}
	p := &st.Preprocessors
	p.Pending = ci.NumPending
	p.AckPending = ci.NumAckPending
	p.Redelivering = ci.NumRedelivered
	p.AckWaitMillis = ci.Config.AckWait.Milliseconds()
	p.MaxDeliver = ci.Config.MaxDeliver
	// Every delivery takes the next consumer sequence; a page's first delivery also moves
	// the stream sequence past it. The difference is the deliveries beyond the first.
	p.Deliveries = ci.Delivered.Consumer
	if ci.Delivered.Consumer > ci.Delivered.Stream {
		p.Redeliveries = ci.Delivered.Consumer - ci.Delivered.Stream
	}
	return st, nil
}

func (c *Coordinator) handleBus(w http.ResponseWriter, r *http.Request) {
	st, err := c.busStatus(r.Context())
	if err != nil {
		c.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}
