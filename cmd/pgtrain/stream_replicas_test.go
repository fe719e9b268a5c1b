package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"pgtrain/internal/devenv"
)

func TestStreamReplicasFlag(t *testing.T) {
	for _, tt := range []struct {
		name    string
		args    []string
		env     string
		want    int
		wantErr bool
	}{
		{name: "default", want: 1},
		{name: "three", args: []string{"--stream-replicas", "3"}, want: 3},
		{name: "the most", args: []string{"--stream-replicas", "5"}, want: 5},
		{name: "from the environment", env: "3", want: 3},
		{name: "zero", args: []string{"--stream-replicas", "0"}, wantErr: true},
		{name: "six", args: []string{"--stream-replicas", "6"}, wantErr: true},
		{name: "not a number", args: []string{"--stream-replicas", "three"}, wantErr: true},
		{name: "six from the environment", env: "6", wantErr: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env != "" {
				t.Setenv("PGTRAIN_STREAM_REPLICAS", tt.env)
			}
			// Every role that declares the streams has the flag.
			for _, mk := range []func() *flag.FlagSet{flagsOf(coordinatorFlags), flagsOf(fetcherFlags), flagsOf(preprocessorFlags), flagsOf(trainerFlags), flagsOf(scorerFlags)} {
				fs := mk()
				fs.SetOutput(io.Discard)
				err := parse(fs, tt.args)
				if tt.wantErr {
					if err == nil || !strings.Contains(err.Error(), "replicas") || exitCode(err) != 2 {
						t.Errorf("pgtrain %s %v: err = %v, want a usage error about the replicas", fs.Name(), tt.args, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("pgtrain %s %v: %v", fs.Name(), tt.args, err)
				}
				if got := fs.Lookup("stream-replicas").Value.String(); got != strconv.Itoa(tt.want) {
					t.Errorf("pgtrain %s %v: --stream-replicas %s, want %d", fs.Name(), tt.args, got, tt.want)
				}
			}
		})
	}
}

// One nats-server cannot hold a replicated stream: the role says which flag asked for it,
// at once; with 1 it connects.
func TestStreamReplicasOnASingleServer(t *testing.T) {
	srv, err := devenv.StartNATS(devenv.NATSOptions{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	for _, tt := range []struct {
		replicas string
		wantErr  bool
	}{{"3", true}, {"1", false}} {
		var nf natsFlags
		fs := newFlagSet("t", "t")
		nf.register(fs)
		if err := parse(fs, []string{"--nats-url", srv.URL, "--stream-replicas", tt.replicas}); err != nil {
			t.Fatal(err)
		}
		nc, b, err := nf.connect(ctx, "test", log, time.Minute)
		if !tt.wantErr {
			if err != nil {
				t.Fatalf("--stream-replicas %s: %v", tt.replicas, err)
			}
			if b.Limits.Replicas != 1 {
				t.Errorf("--stream-replicas 1: the bus has %d replicas", b.Limits.Replicas)
			}
			nc.Close()
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "--stream-replicas "+tt.replicas) {
			t.Errorf("--stream-replicas %s on one server: err = %v, want it to name the flag", tt.replicas, err)
		}
	}
}
