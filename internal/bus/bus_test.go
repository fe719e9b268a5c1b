package bus

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"pgtrain/internal/devenv"
	"pgtrain/messages"
)

func TestReadyRefusesSecondCopyAndReportsFull(t *testing.T) {
	ctx := context.Background()
	nc := connectTest(t)
	b, err := Ensure(ctx, nc, Limits{ReadyMaxBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	// Ensure is idempotent.
	if _, err := Ensure(ctx, nc, Limits{ReadyMaxBytes: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.JS.Publish(ctx, "pgtrain.ready.j.0.0.0", []byte("first")); err != nil {
		t.Fatal(err)
	}
	_, err = b.JS.Publish(ctx, "pgtrain.ready.j.0.0.0", []byte("second"))
	if !IsDuplicateSubject(err) {
		t.Fatalf("second publish on one subject: err = %v, want a duplicate-subject refusal", err)
	}
	if IsStreamFull(err) {
		t.Fatalf("duplicate reported as full: %v", err)
	}
	msg, err := b.Ready.GetLastMsgForSubject(ctx, "pgtrain.ready.j.0.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if string(msg.Data) != "first" {
		t.Fatalf("READY holds %q, want the first copy", msg.Data)
	}
	big := make([]byte, 40<<10)
	var fullErr error
	for i := 1; i < 4 && fullErr == nil; i++ {
		_, fullErr = b.JS.Publish(ctx, "pgtrain.ready.j.0.1."+string(rune('0'+i)), big)
	}
	if !IsStreamFull(fullErr) || IsDuplicateSubject(fullErr) {
		t.Fatalf("publishing past MaxBytes: err = %v, want a stream-full refusal", fullErr)
	}
	// The raw stream deduplicates by message id.
	ack1, err := b.JS.Publish(ctx, "pgtrain.raw.j.0.0.0", []byte("p"), jetstream.WithMsgID("j/0/0/0"))
	if err != nil {
		t.Fatal(err)
	}
	ack2, err := b.JS.Publish(ctx, "pgtrain.raw.j.0.0.0", []byte("p"), jetstream.WithMsgID("j/0/0/0"))
	if err != nil {
		t.Fatal(err)
	}
	if ack1.Duplicate || !ack2.Duplicate || ack1.Sequence != ack2.Sequence {
		t.Fatalf("dedup: first %+v second %+v", ack1, ack2)
	}
}

// Two deployments with different prefixes share one server: each has its own streams,
// consumer and bucket, and sees none of the other's messages. The default prefix keeps the
// names pgtrain always had.
func TestPrefixesShareOneServer(t *testing.T) {
	ctx := context.Background()
	nc := connectTest(t)
	a, err := Ensure(ctx, nc, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Ensure(ctx, nc, Limits{Prefix: "team-b"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Ensure(ctx, nc, Limits{Prefix: "team.b"}); !errors.Is(err, messages.ErrBadPrefix) {
		t.Fatalf("prefix with a dot: err = %v, want ErrBadPrefix", err)
	}
	for _, c := range []struct{ got, want string }{
		{a.Raw.CachedInfo().Config.Name, "PGTRAIN_RAW"},
		{a.Ready.CachedInfo().Config.Name, "PGTRAIN_READY"},
		{a.State.Bucket(), "pgtrain_state"},
		{a.Raw.CachedInfo().Config.Subjects[0], "pgtrain.raw.>"},
		{b.Raw.CachedInfo().Config.Name, "TEAM-B_RAW"},
		{b.Ready.CachedInfo().Config.Name, "TEAM-B_READY"},
		{b.State.Bucket(), "team-b_state"},
		{b.Ready.CachedInfo().Config.Subjects[0], "team-b.ready.>"},
	} {
		if c.got != c.want {
			t.Errorf("name %q, want %q", c.got, c.want)
		}
	}
	id := messages.BatchID{JobID: "j", Page: 1}
	for _, d := range []*Bus{a, b} {
		if _, err := d.JS.Publish(ctx, d.Names().RawSubject(id), []byte(d.Names().Prefix()), jetstream.WithMsgID(id.MsgID())); err != nil {
			t.Fatal(err)
		}
		if _, err := d.JS.Publish(ctx, d.Names().ReadySubject(id), []byte(d.Names().Prefix())); err != nil {
			t.Fatalf("%s: the same batch of another deployment refused: %v", d.Names().Prefix(), err)
		}
		if _, err := d.State.Put(ctx, "k", []byte(d.Names().Prefix())); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []*Bus{a, b} {
		want := d.Names().Prefix()
		for _, s := range []jetstream.Stream{d.Raw, d.Ready} {
			info, err := s.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if info.State.Msgs != 1 {
				t.Fatalf("%s holds %d messages, want its own one", info.Config.Name, info.State.Msgs)
			}
			m, err := s.GetMsg(ctx, info.State.LastSeq)
			if err != nil {
				t.Fatal(err)
			}
			if string(m.Data) != want {
				t.Fatalf("%s holds %q, want %q", info.Config.Name, m.Data, want)
			}
		}
		e, err := d.State.Get(ctx, "k")
		if err != nil || string(e.Value()) != want {
			t.Fatalf("%s: state k = %v, %v; want %q", d.State.Bucket(), e, err, want)
		}
		cons, err := d.Raw.Consumer(ctx, messages.PreprocDurable)
		if err != nil {
			t.Fatal(err)
		}
		if ci := cons.CachedInfo(); ci.NumPending != 1 || ci.Config.FilterSubject != d.Names().RawSubjects() {
			t.Fatalf("%s consumer: %d pending on %s, want 1 on %s", want, ci.NumPending, ci.Config.FilterSubject, d.Names().RawSubjects())
		}
	}
}

// connectTest connects to a new embedded NATS server that lives as long as the test.
func connectTest(t *testing.T) *nats.Conn {
	t.Helper()
	srv, err := devenv.StartNATS(devenv.NATSOptions{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	nc, err := Connect(srv.URL, "test", slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}
