package faults

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"pgtrain/internal/bus"
	"pgtrain/messages"
)

// The replicated bus: three `pgtrain nats` processes form one JetStream cluster on loopback,
// every role is given the three URLs and keeps three replicas of RAW, READY, the state
// bucket and the model store (--stream-replicas 3). Each scenario kill -9s a node at a
// chosen moment and checks what the single-server scenarios check, against a clean run on
// one server. The job is smaller than the other scenarios' (a table of smallRows rows in
// ranges of 2,000), so that the whole set stays near two minutes: most of each scenario is
// the cluster's start and the election after the kill (nats-server's election timeout is 4
// to 9 seconds).
const (
	natsNodes      = 3
	smallTable     = "fault_events_small"
	smallRows      = 30_000
	smallRangeRows = 2000
	smallPageRows  = 500
	// smallRereadMaxBytes holds a few ranges of the small table's batches (about 80 KB a
	// range), not all: every epoch reads PostgreSQL again.
	smallRereadMaxBytes = 512 << 10
)

var (
	smallReread = mode{"re-read", smallRereadMaxBytes, false}
	smallReplay = mode{"replay", replayMaxBytes, true}
)

func smallJobSpec(tbl, consistency string) []byte {
	return sizedJobSpec(tbl, "id", consistency, smallRangeRows, smallPageRows)
}

var small struct {
	once sync.Once
	err  error
	ref  *outcome
}

// smallReference creates the small table and runs its clean job on one nats-server, once.
func smallReference(t *testing.T) *outcome {
	t.Helper()
	small.once.Do(func() {
		if small.err = createTable(context.Background(), smallTable, smallRows); small.err != nil {
			return
		}
		if !t.Run("reference small table", func(t *testing.T) {
			small.ref = runScenario(t, scenario{
				name: "clean (small table, one server)", fault: "none: the reference run of the replicated scenarios",
				mode: smallReread, table: smallTable, spec: smallJobSpec, rawOnce: true,
			}, nil)
		}) {
			small.err = errors.New("the clean run of the small table failed")
		}
	})
	if small.err != nil {
		t.Fatal(small.err)
	}
	return small.ref
}

// replicated is a scenario of the small job on a three-node cluster.
func replicated(sc scenario) scenario {
	sc.table, sc.spec = smallTable, smallJobSpec
	opts, check := sc.opts, sc.check
	sc.opts = func(o *clusterOptions) {
		o.natsNodes = natsNodes
		if opts != nil {
			opts(o)
		}
	}
	sc.check = func(t *testing.T, r *runCtx, o *outcome) {
		// The roles connected to the dead node went on through another (the job ending
		// says they did; the count says how many had to).
		moved := 0
		for _, p := range r.c.roles() {
			if len(p.logLines("nats reconnected")) > 0 {
				moved++
			}
		}
		r.note("%d of %d roles reconnected to another node", moved, len(r.c.roles()))
		if check != nil {
			check(t, r, o)
		}
	}
	return sc
}

// The leader of RAW dies while the fetchers publish and the preprocessors consume in epoch
// 2: publishes wait for the new leader and are retried; RAW still drops every copy.
func TestReplicatedRawLeaderKilled(t *testing.T) {
	ref := smallReference(t)
	runScenario(t, replicated(scenario{
		name:    "R3: RAW leader kill -9",
		fault:   "kill -9 the node leading RAW mid-epoch 2 (every epoch reads PostgreSQL)",
		mode:    smallReread,
		rawOnce: true,
		inject: func(r *runCtx) error {
			if _, err := r.waitStatus("epoch 2", jobTimeout(), atPosition(1, 2)); err != nil {
				return err
			}
			_, err := killStreamLeader(r, r.c.busNames().RawStream())
			return err
		},
	}), ref)
}

// The leader of READY dies while the trainer replays it in epoch 2.
func TestReplicatedReadyLeaderKilled(t *testing.T) {
	ref := smallReference(t)
	runScenario(t, replicated(scenario{
		name:  "R3: READY leader kill -9",
		fault: "kill -9 the node leading READY while the trainer replays it (epoch 2)",
		mode:  smallReplay,
		opts: func(o *clusterOptions) {
			o.trainerArgs = []string{"--step-delay", "2ms"} // an epoch outlasts the election
		},
		inject: func(r *runCtx) error {
			if _, err := r.waitStatus("epoch 2", jobTimeout(), atPosition(1, 1)); err != nil {
				return err
			}
			_, err := killStreamLeader(r, r.c.busNames().ReadyStream())
			return err
		},
		check: func(t *testing.T, r *runCtx, o *outcome) {
			// One read pass: RAW took each page once, a third of the re-reading clean run.
			if o.bus.Raw.LastSeq*epochs != ref.bus.Raw.LastSeq {
				t.Errorf("RAW accepted %d pages in one pass; the clean run %d in %d", o.bus.Raw.LastSeq, ref.bus.Raw.LastSeq, epochs)
			}
		},
	}), ref)
}

// The leader of the state bucket dies while the coordinator grants, extends and completes
// leases in epoch 2.
func TestReplicatedStateLeaderKilled(t *testing.T) {
	ref := smallReference(t)
	runScenario(t, replicated(scenario{
		name:    "R3: KV leader kill -9",
		fault:   "kill -9 the node leading the state bucket while fetchers hold leases (epoch 2)",
		mode:    smallReread,
		rawOnce: true,
		inject: func(r *runCtx) error {
			if _, err := r.waitStatus("epoch 2 with leases held", jobTimeout(), func(st *messages.JobStatus) bool {
				return atPosition(1, 1)(st) && len(st.Leases) > 0
			}); err != nil {
				return err
			}
			_, err := killStreamLeader(r, "KV_"+r.c.busNames().StateBucket())
			return err
		},
	}), ref)
}

// One node is away for the whole job: it dies once the roles declared the streams, before
// the job is submitted, and never comes back. The two others hold every stream's quorum.
func TestReplicatedNodeAway(t *testing.T) {
	ref := smallReference(t)
	runScenario(t, replicated(scenario{
		name:    "R3: one node away",
		fault:   "kill -9 nats-3 before the job is submitted; it stays down",
		mode:    smallReread,
		rawOnce: true,
		prepare: func(r *runCtx) error {
			return killNode(r, r.c.natsNodes[natsNodes-1])
		},
	}), ref)
}

// busNames are the names of the cluster's streams (the roles use the default prefix).
func (c *cluster) busNames() messages.Names {
	n, err := messages.NewNames(messages.DefaultPrefix)
	if err != nil {
		c.t.Fatal(err)
	}
	return n
}

// jetStream connects the test to the cluster as the roles do: every URL, the token,
// reconnecting to another node when one dies.
func (c *cluster) jetStream() (jetstream.JetStream, func(), error) {
	nc, err := bus.ConnectAuth(c.natsURL, "faults", slog.New(slog.NewTextHandler(io.Discard, nil)), bus.Auth{Token: c.natsToken})
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return js, nc.Close, nil
}

// allStreams are the streams the roles declare with replicas.
func (c *cluster) allStreams() []string {
	n := c.busNames()
	return []string{n.RawStream(), n.ScoreStream(), n.ReadyStream(), "KV_" + n.StateBucket(), "OBJ_" + n.ModelBucket()}
}

// natsNode is the node of a JetStream server name.
func (c *cluster) natsNode(name string) (*proc, error) {
	for _, p := range c.natsNodes {
		if p.name == name {
			return p, nil
		}
	}
	return nil, fmt.Errorf("no node is named %q", name)
}

// streamLeader is the server name of stream's leader, "" while it has none.
func streamLeader(js jetstream.JetStream, stream string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return "", err
	}
	if ci := s.CachedInfo().Cluster; ci != nil {
		return ci.Leader, nil
	}
	return "", fmt.Errorf("stream %s reports no cluster: not replicated", stream)
}

// waitLeader polls until stream has a leader that is none of gone.
func waitLeader(js jetstream.JetStream, stream string, timeout time.Duration, gone ...string) (string, error) {
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		leader, err := streamLeader(js, stream)
		if err == nil && leader != "" && !slices.Contains(gone, leader) {
			return leader, nil
		}
		lastErr = err
		if time.Now().After(deadline) {
			return "", fmt.Errorf("stream %s has no leader but %v after %s (last error %v)", stream, gone, timeout, lastErr)
		}
		time.Sleep(20 * time.Millisecond) // polling interval of a condition with a deadline
	}
}

// killStreamLeader kill -9s the node leading stream, and measures the failover: the time
// from the kill until the stream has a leader again.
func killStreamLeader(r *runCtx, stream string) (time.Duration, error) {
	js, closeJS, err := r.c.jetStream()
	if err != nil {
		return 0, err
	}
	defer closeJS()
	old, err := waitLeader(js, stream, 30*time.Second)
	if err != nil {
		return 0, err
	}
	p, err := r.c.natsNode(old)
	if err != nil {
		return 0, err
	}
	return killAndWait(r, js, p, []string{stream})
}

// killNode kill -9s p and waits for every stream it led to have a new leader.
func killNode(r *runCtx, p *proc) error {
	js, closeJS, err := r.c.jetStream()
	if err != nil {
		return err
	}
	defer closeJS()
	var led []string
	for _, s := range r.c.allStreams() {
		leader, err := waitLeader(js, s, 30*time.Second)
		if err != nil {
			return err
		}
		if leader == p.name {
			led = append(led, s)
		}
	}
	_, err = killAndWait(r, js, p, led)
	return err
}

// killAndWait kill -9s node p and waits until each stream in led has a leader on another
// node; the failover is the longest of those waits, from the kill.
func killAndWait(r *runCtx, js jetstream.JetStream, p *proc, led []string) (time.Duration, error) {
	start := time.Now()
	if err := p.kill(); err != nil {
		return 0, err
	}
	if len(led) == 0 {
		r.note("killed %s, which led no stream", p.name)
		return 0, nil
	}
	var failover time.Duration
	for _, s := range led {
		leader, err := waitLeader(js, s, time.Minute, p.name)
		if err != nil {
			return 0, err
		}
		failover = max(failover, time.Since(start))
		r.note("killed %s leading %s; %s leads it %s after the kill", p.name, s, leader, time.Since(start).Round(time.Millisecond))
	}
	r.mu.Lock()
	r.failover = max(r.failover, failover)
	r.mu.Unlock()
	r.c.t.Logf("failover of %v after kill -9 of %s: %s", led, p.name, failover.Round(time.Millisecond))
	return failover, nil
}
