package coordinator

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// faultyPlans is the real state bucket with faults on plan writes: a plan write can land
// and lose its acknowledgement (lostAcks), or find its key taken by another job's plan
// first (collisions).
type faultyPlans struct {
	jetstream.KeyValue
	mu         sync.Mutex
	lostAcks   int
	collisions int
	taken      []string // keys given to another job's plan
}

func (kv *faultyPlans) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	if !strings.HasPrefix(key, "plan.") {
		return kv.KeyValue.Create(ctx, key, value, opts...)
	}
	kv.mu.Lock()
	defer kv.mu.Unlock()
	if kv.collisions > 0 {
		kv.collisions--
		if _, err := kv.KeyValue.Create(ctx, key, []byte("another job's plan")); err != nil {
			return 0, err
		}
		kv.taken = append(kv.taken, key)
	}
	rev, err := kv.KeyValue.Create(ctx, key, value, opts...)
	if err == nil && kv.lostAcks > 0 {
		kv.lostAcks--
		return 0, context.DeadlineExceeded // the write landed; its answer did not
	}
	return rev, err
}

func planKeys(t *testing.T, kv jetstream.KeyValue) []string {
	t.Helper()
	keys, err := kv.ListKeysFiltered(context.Background(), "plan.>")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for k := range keys.Keys() {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestSubmitStoresOnePlanWhateverThePlanWritesMeet(t *testing.T) {
	tests := []struct {
		name                 string
		lostAcks, collisions int
	}{
		{name: "a lost acknowledgement", lostAcks: 1},
		{name: "id collisions", collisions: 2},
		{name: "a collision, then a lost acknowledgement", collisions: 1, lostAcks: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			irisTable(t, e)
			kv := &faultyPlans{KeyValue: e.bus.State, lostAcks: tt.lostAcks, collisions: tt.collisions}
			b := *e.bus
			b.State = kv
			r := start(t, &env{pool: e.pool, dsn: e.dsn, bus: &b}, Config{})
			st, err := r.cl.Submit(context.Background(), specJSON(t, nil))
			if err != nil {
				t.Fatal(err)
			}
			kv.mu.Lock()
			taken, lostAcks := slices.Clone(kv.taken), kv.lostAcks
			kv.mu.Unlock()
			want := append(slices.Clone(taken), "plan."+st.ID)
			slices.Sort(want)
			if got := planKeys(t, e.bus.State); !slices.Equal(got, want) {
				t.Errorf("plans %q, want the job's and the other jobs' only: %q", got, want)
			}
			if _, err := r.cl.Plan(context.Background(), st.ID); err != nil {
				t.Errorf("the job's plan: %v", err)
			}
			if len(taken) != tt.collisions || lostAcks != 0 {
				t.Fatalf("%d collisions and %d lost acknowledgements left: the faults did not all happen", tt.collisions-len(taken), lostAcks)
			}
		})
	}
}
