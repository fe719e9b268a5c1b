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
