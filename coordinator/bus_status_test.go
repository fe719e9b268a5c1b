package coordinator

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"pgtrain/messages"
)

// GET /v1/bus shows pages waiting, in flight and redelivered, and READY's size and limit.
func TestBusStatusCountsRedeliveries(t *testing.T) {
	e := newEnv(t)
	r := start(t, e, Config{})
	ctx := context.Background()
	for page := range 3 {
		id := messages.BatchID{JobID: "j", Pass: 0, Range: 0, Page: page}
		if _, err := e.bus.JS.Publish(ctx, e.bus.Names().RawSubject(id), []byte("page"), jetstream.WithMsgID(id.MsgID())); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.bus.JS.Publish(ctx, e.bus.Names().ReadySubject(messages.BatchID{JobID: "j"}), []byte("batch")); err != nil {
		t.Fatal(err)
	}
	cons, err := e.bus.Raw.Consumer(ctx, messages.PreprocDurable)
	if err != nil {
		t.Fatal(err)
	}
	next := func() jetstream.Msg {
		t.Helper()
		b, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range b.Messages() {
			return m
		}
		t.Fatal("no page delivered")
		return nil
	}
	// The first page is handed back once, then acknowledged on its second delivery; the
	// second page is delivered and held.
	if err := next().Nak(); err != nil {
		t.Fatal(err)
	}
	if err := next().DoubleAck(ctx); err != nil {
		t.Fatal(err)
	}
	next()

	st, err := r.cl.Bus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Raw.Name != e.bus.Names().RawStream() || st.Raw.LastSeq != 3 || st.Raw.Messages != 2 {
		t.Errorf("raw %+v, want 3 pages accepted and 2 left", st.Raw)
	}
	if st.Ready.Name != e.bus.Names().ReadyStream() || st.Ready.Messages != 1 || st.Ready.MaxBytes != 64<<20 || st.Ready.Bytes == 0 {
		t.Errorf("ready %+v, want 1 batch under a 64 MiB limit", st.Ready)
	}
	p := st.Preprocessors
	if p.Deliveries != 3 || p.Redeliveries != 1 || p.Pending != 1 || p.AckPending != 1 || p.AckWaitMillis <= 0 {
		t.Errorf("consumer %+v, want 3 deliveries of which 1 redelivery, 1 page pending, 1 held", p)
	}
}
