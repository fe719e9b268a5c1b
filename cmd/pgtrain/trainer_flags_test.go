package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"pgtrain/trainer"
)

func TestTrainerReadAheadFlagIsBounded(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int // 0: refused
	}{
		{args: nil, want: trainer.DefaultReadAhead},
		{args: []string{"--read-ahead", "1"}, want: 1},
		{args: []string{"--read-ahead", "64"}, want: trainer.MaxReadAhead},
		{args: []string{"--read-ahead", "0"}},
		{args: []string{"--read-ahead", "65"}},
		{args: []string{"--read-ahead", "four"}},
	} {
		fs, o := trainerFlags()
		fs.SetOutput(io.Discard)
		err := parseNoArgs(fs, tc.args)
		switch {
		case tc.want == 0 && err == nil:
			t.Errorf("%v: accepted (read-ahead %d), want an error", tc.args, o.cfg.ReadAhead)
		case tc.want != 0 && err != nil:
			t.Errorf("%v: %v", tc.args, err)
		case tc.want != 0 && o.cfg.ReadAhead != tc.want:
			t.Errorf("%v: read-ahead %d, want %d", tc.args, o.cfg.ReadAhead, tc.want)
		}
	}
}

// Every worker role checks its settings once the flags are read: a value out of range is
// an error naming it, before the role waits for PostgreSQL or NATS (neither listens here,
// and the wait for them would outlast the test).
func TestWorkerRolesRefuseBadSettingsBeforeConnecting(t *testing.T) {
	nats := []string{"--nats-url", "nats://127.0.0.1:1", "--startup-timeout", "1m"}
	db := []string{"--dsn", "postgres://nobody@127.0.0.1:1/none"}
	for _, tc := range []struct {
		name string
		run  func(context.Context, []string) error
		args []string
		want string
	}{
		{"fetcher", runFetcher, append([]string{"--read-ahead", "65"}, db...), "read_ahead must be 1 to 64, got 65"},
		{"preprocessor", runPreprocessor, []string{"--concurrency", "300"}, "concurrency must be 1 to 256, got 300"},
		{"trainer", runTrainer, []string{"--prefetch", "-1"}, "prefetch -1: must be at least 1"},
		{"scorer", runScorer, append([]string{"--concurrency", "-1"}, db...), "concurrency -1: want 1 to 256"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := tc.run(ctx, append(tc.args, nats...))
		cancel()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %v: %v, want an error saying %q", tc.name, tc.args, err, tc.want)
		}
	}
}
