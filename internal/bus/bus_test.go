package bus

import (
	"context"
	"log/slog"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"pgtrain/internal/devenv"
)

func TestReadyRefusesSecondCopyAndReportsFull(t *testing.T) {
	ctx := context.Background()
	srv, err := devenv.StartNATS(devenv.NATSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	nc, err := Connect(srv.URL, "test", slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
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
