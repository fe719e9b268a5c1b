package bus

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"pgtrain/messages"
)

// Every stream, bucket and the model store carries Limits.Replicas.
func TestConfigsCarryReplicas(t *testing.T) {
	n, err := messages.NewNames("")
	if err != nil {
		t.Fatal(err)
	}
	for _, replicas := range []int{0, 1, 3, 5} {
		want := max(replicas, 1)
		for name, got := range map[string]int{
			"RAW":          RawStreamConfig(n, replicas).Replicas,
			"READY":        ReadyStreamConfig(n, 1<<20, replicas).Replicas,
			"state KV":     StateKVConfig(n, replicas).Replicas,
			"model bucket": ModelStoreConfig(n, replicas).Replicas,
		} {
			if got != want {
				t.Errorf("replicas %d: %s has %d, want %d", replicas, name, got, want)
			}
		}
	}
}

// A single server declares R1 and refuses more at once, as an error retrying cannot mend.
func TestEnsureReplicasOnASingleServer(t *testing.T) {
	nc := connectTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	for _, bad := range []int{-1, MaxReplicas + 1} {
		if _, err := Ensure(ctx, nc, Limits{Replicas: bad}); err == nil || !strings.Contains(err.Error(), "replicas") {
			t.Errorf("replicas %d: err = %v, want it refused", bad, err)
		}
	}

	_, err := Ensure(ctx, nc, Limits{Replicas: 3})
	if !errors.Is(err, ErrReplicasNotSupported) {
		t.Fatalf("replicas 3 on one server: err = %v, want ErrReplicasNotSupported", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Ensure waited for its deadline instead of giving up")
	}

	b, err := Ensure(ctx, nc, Limits{Replicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := b.Raw.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ready, err := b.Ready.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The bucket's status does not show its replicas; its stream's config does.
	kv, err := b.JS.Stream(ctx, "KV_"+b.Names().StateBucket())
	if err != nil {
		t.Fatal(err)
	}
	models, err := b.Models.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string]int{"RAW": raw.Config.Replicas, "READY": ready.Config.Replicas, "state KV": kv.CachedInfo().Config.Replicas, "model bucket": models.Replicas()} {
		if got != 1 {
			t.Errorf("%s has %d replicas on the server, want 1", name, got)
		}
	}
}
