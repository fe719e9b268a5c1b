package devenv

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
)

func TestPostgresStartsQueriesAndRestarts(t *testing.T) {
	ctx := context.Background()
	pg, err := StartPostgres(ctx, PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Stop()
	query := func() int {
		conn, err := pgx.Connect(ctx, pg.DSN)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var n int
		if err := conn.QueryRow(ctx, "select count(*) from generate_series(1, 42)").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if got := query(); got != 42 {
		t.Fatalf("count = %d, want 42", got)
	}
	if err := pg.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if got := query(); got != 42 {
		t.Fatalf("after restart count = %d, want 42", got)
	}
}

func TestNATSJetStreamSurvivesRestart(t *testing.T) {
	n, err := StartNATS(NATSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	nc, err := nats.Connect(n.URL, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if got := nc.MaxPayload(); got != 8<<20 {
		t.Fatalf("max payload = %d, want 8 MiB", got)
	}
	js, _ := nc.JetStream()
	if _, err := js.AddStream(&nats.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Storage: nats.FileStorage}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish("t.a", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := n.Restart(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := js.StreamInfo("T")
		if err == nil {
			if info.State.Msgs != 1 {
				t.Fatalf("after restart the stream holds %d messages, want 1", info.State.Msgs)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream not back after restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
