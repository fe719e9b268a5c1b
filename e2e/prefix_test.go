package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"pgtrain/coordinator"
	"pgtrain/internal/bus"
	"pgtrain/internal/local"
	"pgtrain/internal/testenv"
	"pgtrain/messages"
	"pgtrain/trainer"
)

// Two deployments, the default prefix and another, run a job each at the same time on one
// NATS server: each gets its own streams and bucket, each coordinator knows only its own
// job, and both jobs see every row exactly once per epoch and train the same weights.
func TestTwoPrefixesOnOneServer(t *testing.T) {
	ctx := context.Background()
	pool, _ := testenv.Pool(t)
	natsURL := testenv.NATS(t)
	makeTable(t, pool, 20_000)
	want := sqlChecksum(t, pool)

	prefixes := []string{"", "team-b"}
	clusters := make([]*local.Cluster, len(prefixes))
	outs := make([]string, len(prefixes))
	for i, p := range prefixes {
		outs[i] = t.TempDir()
		cl, err := local.Start(ctx, local.Options{
			Sources:       map[string]*pgxpool.Pool{"": pool},
			NATSURL:       natsURL,
			Fetchers:      2,
			Preprocessors: 1,
			Trainer:       true,
			TrainerCfg:    trainer.Config{OutDir: outs[i]},
			Coordinator:   coordinator.Config{Window: 4},
			Limits:        bus.Limits{Prefix: p, ReadyMaxBytes: 2 << 20},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Stop()
		clusters[i] = cl
	}

	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var streams []string
	for name := range js.StreamNames(ctx).Name() {
		streams = append(streams, name)
	}
	for _, name := range []string{"PGTRAIN_RAW", "PGTRAIN_READY", "KV_pgtrain_state", "TEAM-B_RAW", "TEAM-B_READY", "KV_team-b_state"} {
		if !slices.Contains(streams, name) {
			t.Errorf("stream %s missing; the server has %v", name, streams)
		}
	}

	ids := make([]string, len(clusters))
	for i, cl := range clusters {
		st, err := cl.Client.Submit(ctx, spec(5, 2))
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = st.ID
	}
	finals := make([]*messages.JobStatus, len(clusters))
	var wg sync.WaitGroup
	for i, cl := range clusters {
		wg.Go(func() {
			testenv.Eventually(t, 3*time.Minute, "job "+ids[i]+" to end", func() bool {
				select {
				case err := <-cl.Err():
					t.Errorf("a role of deployment %q failed: %v", prefixes[i], err)
					return true
				default:
				}
				s, err := cl.Client.Job(ctx, ids[i])
				if err != nil {
					t.Error(err)
					return true
				}
				finals[i] = s
				return s.State == messages.JobDone || s.State == messages.JobFailed
			})
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	var weights [][]byte
	for i, cl := range clusters {
		f := finals[i]
		if f.State != messages.JobDone {
			t.Fatalf("deployment %q: job %s ended %s: %s", prefixes[i], f.ID, f.State, f.Error)
		}
		for _, e := range f.Results {
			seen := e.Seen
			seen.Merge(e.SeenValid)
			if seen != want {
				t.Fatalf("deployment %q epoch %d: the trainer saw %+v, SQL says %+v", prefixes[i], e.Epoch, seen, want)
			}
		}
		jobs, err := cl.Client.Jobs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		listed := map[string]bool{}
		for _, j := range jobs {
			listed[j.ID] = true
		}
		if other := ids[1-i]; !listed[ids[i]] || listed[other] {
			t.Fatalf("deployment %q lists jobs %v, want its own %s and not %s", prefixes[i], listed, ids[i], other)
		}
		w, err := os.ReadFile(filepath.Join(outs[i], filepath.FromSlash(f.ModelPath), "group1-shard1of1.bin"))
		if err != nil {
			t.Fatal(err)
		}
		weights = append(weights, w)
	}
	if len(weights[0]) == 0 || !bytes.Equal(weights[0], weights[1]) {
		t.Fatal("the two deployments trained different weights on the same data, spec and seed")
	}
}
