package workloop

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestSleepStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Fatal("a cancelled context did not cut the wait short")
	}
	if !Sleep(context.Background(), time.Millisecond) {
		t.Fatal("a full wait reported as cut short")
	}
}

func TestRate(t *testing.T) {
	tests := []struct {
		name string
		n    int64
		d    time.Duration
		want float64
	}{
		{"per second", 1000, 2 * time.Second, 500},
		{"one decimal", 10, 3 * time.Second, 3.3},
		{"empty interval", 10, 0, 0},
	}
	for _, tt := range tests {
		if got := Rate(tt.n, tt.d); got != tt.want {
			t.Errorf("%s: Rate(%d, %s) = %v, want %v", tt.name, tt.n, tt.d, got, tt.want)
		}
	}
}

func TestSummarizeReportsChangesAndAFinalTotal(t *testing.T) {
	var rows atomic.Int64
	var mu sync.Mutex
	var reports []int64
	var finals int
	stop := Summarize(5*time.Millisecond, rows.Load, func(n int64) int64 { return n },
		func(n int64, _ float64, final bool) {
			mu.Lock()
			defer mu.Unlock()
			reports = append(reports, n)
			if final {
				finals++
			}
		})
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		got := len(reports)
		mu.Unlock()
		if got > 0 {
			break
		}
		rows.Add(1) // a change the summary has not seen yet, however late its first look was
		if time.Now().After(deadline) {
			t.Fatal("no progress report after the counters changed")
		}
		time.Sleep(time.Millisecond)
	}
	stop()
	mu.Lock()
	defer mu.Unlock()
	if reports[0] < 1 || reports[len(reports)-1] != rows.Load() || finals != 1 {
		t.Fatalf("reports %v with %d final ones; want a change first, the total %d last, one final", reports, finals, rows.Load())
	}
}

func TestBackoffDoublesUpToMaxAndResets(t *testing.T) {
	b := Backoff{Min: time.Microsecond, Max: 5 * time.Microsecond}
	var got []time.Duration
	for range 5 {
		got = append(got, b.Next())
		if !b.Wait(context.Background()) {
			t.Fatal("a wait without cancellation reported as cut short")
		}
	}
	want := []time.Duration{1000, 2000, 4000, 5000, 5000}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("waits %v, want %v", got, want)
		}
	}
	b.Reset()
	if b.Next() != time.Microsecond {
		t.Fatalf("after Reset the next wait is %s, want Min", b.Next())
	}
}

func TestBackoffWaitStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b := Backoff{Min: time.Hour, Max: time.Hour}
	start := time.Now()
	if b.Wait(ctx) {
		t.Fatal("a cancelled context did not cut the wait short")
	}
	if time.Since(start) > time.Minute {
		t.Fatal("the cancelled wait took its full length")
	}
}

func TestBackoffMinAboveMax(t *testing.T) {
	// The first wait is Min whatever Max says; the loops it replaced did the same.
	b := Backoff{Min: 2 * time.Microsecond, Max: time.Microsecond}
	b.Wait(context.Background())
	if b.Next() != time.Microsecond {
		t.Fatalf("second wait %s, want Max", b.Next())
	}
}
