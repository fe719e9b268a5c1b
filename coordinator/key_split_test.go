package coordinator

import (
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"pgtrain/messages"
)

// cutByQuantiles is the reference the key cutter must match: percentile_disc over the
// sorted keys (row ceil(i/n · total), as PostgreSQL computes it), rangeBounds, and each
// key's checksum in the range that holds it.
func cutByQuantiles(keys []int64, n int) ([]messages.KeyRange, []messages.KeyChecksum) {
	sorted := slices.Sorted(slices.Values(keys))
	var splits []int64
	for i := 1; i < n; i++ {
		row := max(int64(math.Ceil(float64(i)/float64(n)*float64(len(sorted)))), 1)
		splits = append(splits, sorted[row-1])
	}
	bounds := rangeBounds(splits)
	sums := make([]messages.KeyChecksum, len(bounds))
	for _, k := range keys {
		i, _ := slices.BinarySearchFunc(bounds, k, func(r messages.KeyRange, k int64) int {
			switch {
			case r.Hi < k:
				return -1
			case r.Lo > k:
				return 1
			}
			return 0
		})
		sums[i].Add(k)
	}
	return bounds, sums
}

func TestKeyCutterCutsWherePercentileDiscDoes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	dense := make([]int64, 1000)
	for i := range dense {
		dense[i] = int64(i + 1)
	}
	dups := make([]int64, 1000)
	for i := range dups {
		dups[i] = int64(i / 250) // four keys, 250 rows each
	}
	skewed := make([]int64, 5000)
	for i := range skewed {
		skewed[i] = rng.Int64N(1000) - 500
		if i%10 == 0 {
			skewed[i] = rng.Int64() // spread over all of int64
		}
	}
	tests := []struct {
		name string
		keys []int64
		n    int
	}{
		{name: "one range", keys: dense, n: 1},
		{name: "dense keys", keys: dense, n: 7},
		{name: "more ranges than rows", keys: dense[:5], n: 20},
		{name: "duplicate keys collapse", keys: dups, n: 10},
		{name: "skewed and duplicated", keys: skewed, n: 33},
		{name: "extreme keys", keys: []int64{math.MinInt64, -1, 0, math.MaxInt64, math.MaxInt64}, n: 3},
		{name: "a split at the greatest key", keys: []int64{1, 2, 3}, n: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantBounds, wantSums := cutByQuantiles(tt.keys, tt.n)
			c := newKeyCutter(int64(len(tt.keys)), tt.n)
			for _, k := range slices.Sorted(slices.Values(tt.keys)) {
				c.add(k)
			}
			bounds, sums := c.result()
			if !reflect.DeepEqual(bounds, wantBounds) || !slices.Equal(sums, wantSums) {
				t.Fatalf("got %+v %+v\nwant %+v %+v", bounds, sums, wantBounds, wantSums)
			}
		})
	}
}

func TestRangeCount(t *testing.T) {
	tests := []struct {
		name       string
		rangeRows  int
		validation float64
		rows       int64
		want       int
	}{
		{name: "rounds up", rangeRows: 300, rows: 1000, want: 4},
		{name: "one range", rangeRows: 50000, rows: 10, want: 1},
		{name: "validation asks for 20", rangeRows: 300, validation: 0.25, rows: 1000, want: 20},
		{name: "validation on a tiny table", rangeRows: 300, validation: 0.25, rows: 3, want: 3},
		{name: "validation on one row", rangeRows: 300, validation: 0.25, rows: 1, want: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rangeCount(messages.JobSpec{RangeRows: tt.rangeRows, ValidationSplit: tt.validation}, tt.rows); got != tt.want {
				t.Fatalf("got %d, want %d", got, tt.want)
			}
		})
	}
}
