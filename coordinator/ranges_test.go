package coordinator

import (
	"context"
	"encoding/json"
	"math"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"pgtrain/messages"
)

// 100k rows, 90% of them in 1% of the key space, plus the extreme int64 keys: the ranges
// must still hold about equal row counts, and the checksums must match the keys exactly.
func TestRangesFollowRowsNotKeys(t *testing.T) {
	e := newEnv(t)
	e.exec(t, `create table skewed (k bigint primary key, x float8 not null, y float8 not null)`)
	// 90,000 dense keys in [-5,000,000, -4,910,000): 1% of a 9,000,000-wide space.
	e.exec(t, `insert into skewed select -5000000 + i, i % 13, i % 2 from generate_series(0, 89999) i`)
	// 9,998 sparse keys spread over the other 99%.
	e.exec(t, `insert into skewed select -4910000 + i * 890, i % 13, i % 2 from generate_series(1, 9998) i`)
	e.exec(t, `insert into skewed values (-9223372036854775808, 1, 0), (9223372036854775807, 2, 1)`)
	ctx := context.Background()
	p := planKeyedTable(t, e, "skewed", 10000)
	const total = 100000
	if len(p.Ranges) != 10 {
		t.Fatalf("%d ranges, want 10", len(p.Ranges))
	}
	var sum int64
	for _, rg := range p.Ranges {
		sum += rg.Rows
		if math.Abs(float64(rg.Rows)-total/10) > 0.2*total/10 {
			t.Errorf("range %d [%d, %d] has %d rows, want %d ± 20%%", rg.Index, rg.Lo, rg.Hi, rg.Rows, total/10)
		}
	}
	checkRangeCounts(t, e, "skewed", p)
	if sum != total || p.Expected.Rows != total || p.ExpectedValid.Rows != 0 {
		t.Fatalf("ranges sum to %d, expected %+v, want %d", sum, p.Expected, total)
	}
	// Equal-width strides over the same key space would be badly unbalanced.
	var strides []int64
	rows, err := e.pool.Query(ctx, `select count(*) from skewed where k > -9000000000 and k < 9000000000
group by width_bucket(k, -5000000, 4000000, 10) order by 1`)
	if err != nil {
		t.Fatal(err)
	}
	strides, err = pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	if slices.Max(strides) < 5*total/10 {
		t.Fatalf("equal-width strides %v are balanced; the data is not skewed enough to test anything", strides)
	}
	// The expected checksum is exactly what the keys give.
	var want messages.KeyChecksum
	rows, err = e.pool.Query(ctx, `select k from skewed`)
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
	if p.Expected != want {
		t.Fatalf("expected checksum %+v, keys give %+v", p.Expected, want)
	}
}

func TestRangeBounds(t *testing.T) {
	tests := []struct {
		name   string
		splits []int64
		want   [][2]int64
	}{
		{name: "no split", want: [][2]int64{{math.MinInt64, math.MaxInt64}}},
		{name: "two splits", splits: []int64{10, 20}, want: [][2]int64{{math.MinInt64, 10}, {11, 20}, {21, math.MaxInt64}}},
		{name: "duplicates collapse", splits: []int64{5, 5, 5, 9}, want: [][2]int64{{math.MinInt64, 5}, {6, 9}, {10, math.MaxInt64}}},
		{name: "split at max int", splits: []int64{1, math.MaxInt64}, want: [][2]int64{{math.MinInt64, 1}, {2, math.MaxInt64}}},
		{name: "split at min int", splits: []int64{math.MinInt64}, want: [][2]int64{{math.MinInt64, math.MinInt64}, {math.MinInt64 + 1, math.MaxInt64}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := rangeBounds(tt.splits)
			if len(got) != len(tt.want) {
				t.Fatalf("got %+v, want %v", got, tt.want)
			}
			for i, g := range got {
				if g.Index != i || g.Lo != tt.want[i][0] || g.Hi != tt.want[i][1] {
					t.Fatalf("got %+v, want %v", got, tt.want)
				}
			}
		})
	}
}

func FuzzRangeBounds(f *testing.F) {
	f.Add(int64(0), int64(0), int64(5))
	f.Add(int64(math.MinInt64), int64(-1), int64(math.MaxInt64))
	f.Fuzz(func(t *testing.T, a, b, c int64) {
		splits := []int64{a, b, c}
		slices.Sort(splits)
		got := rangeBounds(splits)
		// The ranges partition int64: contiguous, non-empty, from min to max.
		if got[0].Lo != math.MinInt64 || got[len(got)-1].Hi != math.MaxInt64 {
			t.Fatalf("%v: ends %+v", splits, got)
		}
		for i, g := range got {
			if g.Lo > g.Hi || g.Index != i || (i > 0 && g.Lo != got[i-1].Hi+1) {
				t.Fatalf("%v: %+v", splits, got)
			}
		}
	})
}

// planKeyedTable plans table (key k, feature x, label y) in ranges of rangeRows rows.
func planKeyedTable(t *testing.T, e *env, table string, rangeRows int) *messages.Plan {
	t.Helper()
	r := start(t, e, Config{})
	ctx := context.Background()
	spec, _ := json.Marshal(map[string]any{
		"table": table, "key": "k",
		"features":   []any{map[string]any{"column": "x"}},
		"label":      "y",
		"model":      json.RawMessage(`{"layers": [{"type": "dense", "units": 1}]}`),
		"loss":       "mse",
		"range_rows": rangeRows,
	})
	st, err := r.cl.Submit(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.cl.Plan(ctx, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// checkRangeCounts checks that each planned range's row count is SQL's exact count of its keys.
func checkRangeCounts(t *testing.T, e *env, table string, p *messages.Plan) {
	t.Helper()
	for _, rg := range p.Ranges {
		var n int64
		err := e.pool.QueryRow(context.Background(), `select count(*) from `+pgx.Identifier{table}.Sanitize()+` where k between $1 and $2`, rg.Lo, rg.Hi).Scan(&n)
		if err != nil || n != rg.Rows {
			t.Errorf("range %d: plan says %d rows, SQL counts %d (%v)", rg.Index, rg.Rows, n, err)
		}
	}
}
