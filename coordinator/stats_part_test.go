package coordinator

import (
	"slices"
	"testing"
)

func TestTextStatsVocabulary(t *testing.T) {
	seen := func(limit int, values ...string) *textStats {
		ts := &textStats{vocab: map[string]*int64{}, limit: limit}
		for _, v := range values {
			ts.see([]byte(v))
		}
		return ts
	}
	tests := []struct {
		name     string
		parts    []*textStats
		k        int
		want     []string
		wantOver bool
	}{
		{name: "most frequent first, ties in byte order", parts: []*textStats{seen(10, "b", "a", "c", "c", "B", "a")}, k: 3, want: []string{"a", "c", "B"}},
		{name: "fewer values than k", parts: []*textStats{seen(10, "x")}, k: 5, want: []string{"x"}},
		{name: "parts merge their counts", parts: []*textStats{seen(10, "a", "b"), seen(10, "b", "c")}, k: 1, want: []string{"b"}},
		{name: "past the limit", parts: []*textStats{seen(2, "a", "b", "c")}, wantOver: true},
		{name: "past the limit once merged", parts: []*textStats{seen(2, "a", "b"), seen(2, "c")}, wantOver: true},
		{name: "a part past the limit", parts: []*textStats{seen(5, "a"), seen(1, "b", "c")}, wantOver: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			total := tt.parts[0]
			var count int64
			for _, p := range tt.parts {
				count += p.count
			}
			for _, p := range tt.parts[1:] {
				total.merge(p)
			}
			if total.count != count || total.over != tt.wantOver {
				t.Fatalf("count %d (want %d), over %v", total.count, count, total.over)
			}
			if !tt.wantOver {
				if got := total.top(tt.k); !slices.Equal(got, tt.want) {
					t.Fatalf("top %d: %q, want %q", tt.k, got, tt.want)
				}
			}
		})
	}
}
