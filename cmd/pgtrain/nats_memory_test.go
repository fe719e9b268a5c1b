package main

import (
	"math"
	"testing"

	"pgtrain/internal/bus"
)

func TestNATSMemoryLimit(t *testing.T) {
	for _, tt := range []struct {
		name    string
		limit   int64
		ready   int64
		want    int64
		wantErr bool
	}{
		{name: "none", limit: 0, ready: 1 << 30, want: 0},
		{name: "the default follows READY", limit: memoryLimitFromReady, ready: 1 << 30, want: 1<<30 + bus.ServerMemoryHeadroom},
		{name: "a smaller READY", limit: memoryLimitFromReady, ready: 100 << 20, want: 356 << 20},
		{name: "the least", limit: minNATSMemoryLimit, ready: 1 << 30, want: minNATSMemoryLimit},
		{name: "below the least", limit: minNATSMemoryLimit - 1, ready: 1 << 30, wantErr: true},
		{name: "negative", limit: -2, ready: 1 << 30, wantErr: true},
		{name: "no READY limit", limit: memoryLimitFromReady, ready: 0, wantErr: true},
		{name: "a READY limit that overflows", limit: memoryLimitFromReady, ready: math.MaxInt64, wantErr: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := natsOpts{memLimit: tt.limit, readyMaxBytes: tt.ready}
			got, err := o.memoryLimit()
			if (err != nil) != tt.wantErr {
				t.Fatalf("memoryLimit(%d, %d) = %v, want error %v", tt.limit, tt.ready, err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Fatalf("memoryLimit(%d, %d) = %d, want %d", tt.limit, tt.ready, got, tt.want)
			}
		})
	}
}

// The default limit is READY's default plus the headroom, and READY's variable moves it.
func TestNATSMemoryLimitDefault(t *testing.T) {
	fs, o := natsServerFlags()
	if err := parse(fs, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := o.memoryLimit(); err != nil || got != bus.DefaultReadyMaxBytes+bus.ServerMemoryHeadroom {
		t.Fatalf("default memory limit %d, %v; want %d", got, err, bus.DefaultReadyMaxBytes+bus.ServerMemoryHeadroom)
	}
	t.Setenv("PGTRAIN_READY_MAX_BYTES", "536870912")
	fs, o = natsServerFlags()
	if err := parse(fs, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := o.memoryLimit(); err != nil || got != 512<<20+bus.ServerMemoryHeadroom {
		t.Fatalf("memory limit with PGTRAIN_READY_MAX_BYTES %d, %v; want %d", got, err, 512<<20+bus.ServerMemoryHeadroom)
	}
}

// The flag reads its PGTRAIN_ variable like every other.
func TestNATSMemoryLimitFromEnv(t *testing.T) {
	t.Setenv("PGTRAIN_MEMORY_LIMIT", "134217728")
	fs, o := natsServerFlags()
	if err := parse(fs, nil); err != nil {
		t.Fatal(err)
	}
	if o.memLimit != 128<<20 {
		t.Fatalf("memory limit %d, want %d", o.memLimit, 128<<20)
	}
}
