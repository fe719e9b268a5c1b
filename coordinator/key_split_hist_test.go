package coordinator

import (
	"context"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"pgtrain/messages"
)

// histogramOf counts keys into a histogram read in parts: the keys shuffled and dealt to
// parts histograms, merged, as the statistics parts are.
func histogramOf(t *testing.T, keys []int64, parts int, rng *rand.Rand) *keyHistogram {
	t.Helper()
	span := keySpan{lo: slices.Min(keys), hi: slices.Max(keys)}
	shuffled := slices.Clone(keys)
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	var total *keyHistogram
	for p := range parts {
		h := newKeyHistogram(span)
		for i := p; i < len(shuffled); i += parts {
			if err := h.add(binary.BigEndian.AppendUint64(nil, uint64(shuffled[i]))); err != nil {
				t.Fatal(err)
			}
		}
		if total == nil {
			total = h
		} else {
			total.merge(h)
		}
	}
	return total
}

// inMemoryKeys reads the sorted keys from lo to hi into the cutter, as the key's index
// would, and counts the keys read.
func inMemoryKeys(sorted []int64, read *int64) func(lo, hi int64, c *keyCutter) (int64, error) {
	return func(lo, hi int64, c *keyCutter) (int64, error) {
		var n int64
		for _, k := range sorted {
			if k >= lo && k <= hi {
				c.add(k)
				n++
			}
		}
		*read += n
		return n, nil
	}
}

func TestHistogramSplitIsExactBalancedAndOrderFree(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	seq := func(from, n int64) []int64 {
		out := make([]int64, n)
		for i := range out {
			out[i] = from + int64(i)
		}
		return out
	}
	uniform := make([]int64, 50000)
	for i := range uniform {
		uniform[i] = rng.Int64()
	}
	slices.Sort(uniform)
	uniform = slices.Compact(uniform)
	tests := []struct {
		name string
		keys []int64
		n    int
		// balanced: every range within 1/4 of an equal share (distinct keys).
		balanced bool
		// maxRead bounds the keys read one by one.
		maxRead int64
	}{
		{name: "dense keys need no key reading", keys: seq(1, 200000), n: 20, balanced: true, maxRead: 0},
		{name: "uniform over int64", keys: uniform, n: 10, balanced: true, maxRead: 0},
		{name: "clustered far from a few", keys: append(seq(1, 1000), seq(1_000_000_000_000_000, 100_001)...), n: 11, balanced: true, maxRead: 100_001},
		{name: "extreme keys", keys: append(seq(-5000, 20000), math.MinInt64, math.MaxInt64), n: 7, balanced: true, maxRead: 20002},
		{name: "many rows on one key", keys: append(slices.Repeat([]int64{42}, 30000), seq(1000, 10000)...), n: 8},
		{name: "more ranges than rows", keys: []int64{5, 9, 1 << 40}, n: 20},
		{name: "one row", keys: []int64{-7}, n: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sorted := slices.Sorted(slices.Values(tt.keys))
			total := int64(len(sorted))
			var first []messages.KeyRange
			var firstSums []messages.KeyChecksum
			for _, parts := range []int{1, 3, 12} {
				var read int64
				bounds, sums, err := cutHistogram(histogramOf(t, tt.keys, parts, rng), total, tt.n, inMemoryKeys(sorted, &read))
				if err != nil {
					t.Fatal(err)
				}
				if first == nil {
					first, firstSums = bounds, sums
				} else if !reflect.DeepEqual(bounds, first) || !slices.Equal(sums, firstSums) {
					t.Fatalf("%d parts: %+v, 1 part: %+v", parts, bounds, first)
				}
				if tt.balanced && read > tt.maxRead {
					t.Fatalf("%d keys read one by one, want at most %d", read, tt.maxRead)
				}
			}
			// The ranges partition int64 and each checksum is exactly its keys'.
			if first[0].Lo != math.MinInt64 || first[len(first)-1].Hi != math.MaxInt64 || len(firstSums) != len(first) {
				t.Fatalf("ranges %+v", first)
			}
			for i, r := range first {
				if r.Lo > r.Hi || r.Index != i || (i > 0 && r.Lo != first[i-1].Hi+1) {
					t.Fatalf("ranges %+v", first)
				}
				var want messages.KeyChecksum
				for _, k := range sorted {
					if k >= r.Lo && k <= r.Hi {
						want.Add(k)
					}
				}
				if firstSums[i] != want {
					t.Fatalf("range %d [%d, %d]: checksum %+v, keys give %+v", i, r.Lo, r.Hi, firstSums[i], want)
				}
				share := float64(total) / float64(tt.n)
				if tt.balanced && math.Abs(float64(want.Rows)-share) > share/4+1 {
					t.Errorf("range %d [%d, %d] has %d rows, want %.0f ± 1/4", i, r.Lo, r.Hi, want.Rows, share)
				}
			}
			if tt.balanced && len(first) != tt.n {
				t.Fatalf("%d ranges, want %d", len(first), tt.n)
			}
		})
	}
}

// A bucket of one key value (a span under keyBuckets) is never read key by key: nothing
// could cut it.
func TestHistogramSplitKeepsOneKeyWhole(t *testing.T) {
	keys := append(slices.Repeat([]int64{42}, 30000), 1, 2, 3, 60000)
	var read int64
	bounds, sums, err := cutHistogram(histogramOf(t, keys, 2, rand.New(rand.NewPCG(5, 6))), int64(len(keys)), 4, inMemoryKeys(slices.Sorted(slices.Values(keys)), &read))
	if err != nil {
		t.Fatal(err)
	}
	want := []messages.KeyRange{{Index: 0, Lo: math.MinInt64, Hi: 42}, {Index: 1, Lo: 43, Hi: math.MaxInt64}}
	if !reflect.DeepEqual(bounds, want) || sums[0].Rows != 30003 || sums[1].Rows != 1 {
		t.Fatalf("got %+v %+v, want %+v", bounds, sums, want)
	}
	if read != 0 {
		t.Fatalf("%d keys read one by one, want none", read)
	}
}

func TestKeyHistogramRefusesAKeyOutsideItsSpan(t *testing.T) {
	h := newKeyHistogram(keySpan{lo: 10, hi: 20})
	if err := h.add(binary.BigEndian.AppendUint64(nil, 21)); err == nil {
		t.Fatal("a key over the greatest was counted")
	}
	if err := h.add([]byte{1, 2}); err == nil {
		t.Fatal("a 2-byte key was counted")
	}
	if err := newKeyHistogram(keySpan{empty: true}).add(binary.BigEndian.AppendUint64(nil, 1)); err == nil {
		t.Fatal("a key was counted in an empty span")
	}
}

// 1,000 keys from 1 and 1,000,001 from 10^15: every key of the cluster falls in one or two
// buckets of the histogram, which the split reads key by key to keep the ranges even; the
// planned counts and checksums are exact.
func TestClusteredKeysSplitEvenly(t *testing.T) {
	e := newEnv(t)
	e.exec(t, `create table clustered (k bigint primary key, x float8 not null, y float8 not null)`)
	e.exec(t, `insert into clustered select i, i % 7, i % 2 from generate_series(1, 1000) i`)
	e.exec(t, `insert into clustered select 1000000000000000 + i, i % 7, i % 2 from generate_series(0, 1000000) i`)
	ctx := context.Background()
	p := planKeyedTable(t, e, "clustered", 100000)
	const total = 1001001
	if len(p.Ranges) != 11 {
		t.Fatalf("%d ranges, want 11", len(p.Ranges))
	}
	for _, rg := range p.Ranges {
		if share := float64(total) / 11; math.Abs(float64(rg.Rows)-share) > share/4 {
			t.Errorf("range %d [%d, %d] has %d rows, want %.0f ± 1/4", rg.Index, rg.Lo, rg.Hi, rg.Rows, share)
		}
	}
	checkRangeCounts(t, e, "clustered", p)
	var want messages.KeyChecksum
	rows, err := e.pool.Query(ctx, `select k from clustered`)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		want.Add(k)
	}
	if got := p.Expected; got != want {
		t.Fatalf("expected checksum %+v, keys give %+v", got, want)
	}
}

// A plan without statistics (a prediction's, a warm start's with reused transforms) reads
// the key alone in the table's parts: its ranges and checksums are the same on one
// connection and on several, and each range's checksum (its row count among them) is that
// of its keys in SQL.
func TestKeySplitInPartsIsTheSameOnAnyConnections(t *testing.T) {
	e := newEnv(t)
	e.exec(t, `create table keyed (id bigint primary key, x float8 not null, y float8 not null, pad text not null)`)
	e.exec(t, `insert into keyed select i * 3 + i % 7, i, i % 2, repeat('p', 40) from generate_series(1, 200000) i`)
	ctx := context.Background()
	spec, err := messages.ParseJobSpec(specJSON(t, func(m map[string]any) {
		m["table"] = "keyed"
		m["features"] = []any{map[string]any{"column": "x"}}
		m["label"] = "y"
		m["loss"] = "mse"
		m["range_rows"] = 15000
	}))
	if err != nil {
		t.Fatal(err)
	}
	split := func(pc planConns) *keySplit {
		t.Helper()
		pc, in, end := planInParts(t, e, spec, pc)
		defer end()
		s, err := splitKeysInParts(ctx, pc, in)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	whole := split(planConns{})
	for _, helpers := range []int{1, 2} {
		if parts := split(planConns{pool: e.pool, helpers: helpers}); !reflect.DeepEqual(whole, parts) {
			t.Fatalf("%d helpers: split\n%+v\none pass:\n%+v", helpers, parts, whole)
		}
	}
	if whole.rows != 200000 || len(whole.bounds) < 13 {
		t.Fatalf("%d rows in %d ranges, want 200000 in ranges of about 15000", whole.rows, len(whole.bounds))
	}
	for i, rg := range whole.bounds {
		rows, err := e.pool.Query(ctx, `select id from keyed where id between $1 and $2`, rg.Lo, rg.Hi)
		if err != nil {
			t.Fatal(err)
		}
		keys, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			t.Fatal(err)
		}
		var want messages.KeyChecksum
		for _, k := range keys {
			want.Add(k)
		}
		if whole.sums[i] != want || want.Rows == 0 {
			t.Errorf("range %d [%d, %d]: planned checksum %+v; SQL's keys give %+v", i, rg.Lo, rg.Hi, whole.sums[i], want)
		}
	}
}
