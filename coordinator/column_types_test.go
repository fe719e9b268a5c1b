package coordinator

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"

	"pgtrain/messages"
)

// typedSpec is a regression on the typed table with the given features.
func typedSpec(t *testing.T, table string, features ...map[string]any) []byte {
	t.Helper()
	fs := make([]any, len(features))
	for i, f := range features {
		fs[i] = f
	}
	b, err := json.Marshal(map[string]any{
		"table": table, "key": "id", "features": fs, "label": "y",
		"model": json.RawMessage(`{"layers": [{"type": "dense", "units": 1}]}`), "loss": "mse", "epochs": 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Boolean, date, timestamp, timestamptz and array columns are planned with the statistics
// SQL computes over the same numbers (seconds since the epoch; 0 and 1; each element), and
// the width each encoding takes.
func TestColumnTypesArePlannedWithTheirStatistics(t *testing.T) {
	e := newEnv(t)
	e.exec(t, `create domain stamp as timestamptz`)
	e.exec(t, `create table typed (id int primary key, flag bool, day date, at timestamp, atz stamp,
		emb real[], vec float8[], tag text, y float8)`)
	e.exec(t, `insert into typed select i, i % 3 = 0, date '2020-02-27' + i, timestamp '2024-03-30 22:00' + i * interval '37 minutes 1.5 seconds',
		timestamptz '1999-12-31 23:00:00+00' - i * interval '1 day 1 hour',
		case when i % 10 = 0 then null else array[i * 0.25, -i, case when i % 4 = 0 then null else 1.0 / i end]::real[] end,
		array[i, i * i]::float8[], 'user-' || i, i
		from generate_series(1, 400) i`)
	r := start(t, e, Config{})
	ctx := context.Background()
	st, err := r.cl.Submit(ctx, typedSpec(t, "typed",
		map[string]any{"column": "flag", "scale": "standard"},
		map[string]any{"column": "day", "scale": "minmax"},
		map[string]any{"column": "at", "encode": "cyclical"},
		map[string]any{"column": "atz", "scale": "standard", "impute": "median"},
		map[string]any{"column": "emb", "scale": "standard", "impute": "mean"},
		map[string]any{"column": "vec", "impute": "median"},
		map[string]any{"column": "tag", "encode": "hash", "buckets": 32},
	))
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.cl.Plan(ctx, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	if p.InputDim != 1+1+6+1+3+2+32 {
		t.Fatalf("input_dim %d, want 46", p.InputDim)
	}
	wantTypes := []string{messages.TypeBoolean, messages.TypeDate, messages.TypeTimestamp, messages.TypeTimestampTZ,
		messages.TypeFloat4Array, messages.TypeFloat8Array, messages.TypeNumber}
	for i, f := range p.Features {
		if f.Type != wantTypes[i] {
			t.Errorf("feature %s: type %q, want %q", f.Name, f.Type, wantTypes[i])
		}
	}
	if f := p.Features[2]; f.Encode != messages.EncodeCyclical || f.Width() != 6 {
		t.Errorf("at: encode %q width %d", f.Encode, f.Width())
	}
	if f := p.Features[6]; f.Kind != messages.KindCategorical || f.Encode != messages.EncodeHash || f.Buckets != 32 || len(f.Vocabulary) != 0 {
		t.Errorf("tag: %+v", f)
	}
	// SQL's statistics of the same numbers: count, NULLs, min and max exactly, mean and
	// standard deviation from numeric within 1e-9 (the plan's are the exact values rounded
	// once; numeric division rounds at its own scale).
	check := func(name string, got messages.Stats, expr string) {
		t.Helper()
		var want messages.Stats
		err := e.pool.QueryRow(ctx, fmt.Sprintf(`select count(x), count(*) - count(x), coalesce(avg(x::numeric)::float8, 0), coalesce(stddev_pop(x::numeric)::float8, 0), min(x), max(x)
			from (select (%s)::float8 as x from typed) s`, expr)).Scan(&want.Count, &want.Nulls, &want.Mean, &want.StdDev, &want.Min, &want.Max)
		if err != nil {
			t.Fatal(err)
		}
		if got.Count != want.Count || got.Nulls != want.Nulls || got.Min != want.Min || got.Max != want.Max ||
			!near(got.Mean, want.Mean) || !near(got.StdDev, want.StdDev) {
			t.Errorf("%s: stats %+v, SQL says %+v", name, got, want)
		}
	}
	check("flag", p.Features[0].Stats, "flag::int")
	check("day", p.Features[1].Stats, "extract(epoch from day)")
	check("at", p.Features[2].Stats, "extract(epoch from at)")
	check("atz", p.Features[3].Stats, "extract(epoch from atz)")
	for j := range 3 {
		check(fmt.Sprintf("emb[%d]", j+1), p.Features[4].Elements[j].Stats, fmt.Sprintf("emb[%d]::float8", j+1))
	}
	for j := range 2 {
		check(fmt.Sprintf("vec[%d]", j+1), p.Features[5].Elements[j].Stats, fmt.Sprintf("vec[%d]", j+1))
	}
	// The transforms follow: flag 1/3 true; day min-max over 400 days; atz by its median;
	// emb's NULL elements (whole rows and every 4th third element) imputed with the mean.
	flag := p.Features[0]
	if flag.Stats.Mean != 133.0/400 || flag.Offset != flag.Stats.Mean || flag.Factor != 1/flag.Stats.StdDev {
		t.Errorf("flag: %+v", flag)
	}
	if day := p.Features[1]; day.Offset != day.Stats.Min || day.Factor != 1/(399*86400.0) {
		t.Errorf("day: offset %v factor %v", day.Offset, day.Factor)
	}
	var median float64
	if err := e.pool.QueryRow(ctx, `select percentile_cont(0.5) within group (order by extract(epoch from atz)::float8) from typed`).Scan(&median); err != nil {
		t.Fatal(err)
	}
	if atz := p.Features[3]; !atz.HasImpute || atz.Impute != median {
		t.Errorf("atz: impute %v, want the median %v", atz.Impute, median)
	}
	emb := p.Features[4].Elements
	if len(emb) != 3 || emb[2].Stats.Nulls != 40+100-20 || !emb[2].HasImpute || emb[2].Impute != emb[2].Stats.Mean {
		t.Errorf("emb: %+v", emb)
	}
}

// NaN and ±Infinity: refused by default, NULL (then imputed) with nonfinite null, clipped
// to the finite extremes with clip (NaN then NULL). The statistics are the finite values'
// and the plan counts the others.
func TestNonFiniteOptions(t *testing.T) {
	e := newEnv(t)
	e.exec(t, `create table wild (id int primary key, x float8, y float8)`)
	e.exec(t, `insert into wild select i, case i when 11 then 'NaN' when 12 then 'Infinity' when 13 then '-Infinity' else i::float8 end, i
		from generate_series(1, 13) i`)
	r := start(t, e, Config{})
	ctx := context.Background()
	tests := []struct {
		name      string
		feature   map[string]any
		wantField string
		wantMsg   string
	}{
		{name: "default", feature: map[string]any{"column": "x"}, wantField: "features[0].column",
			wantMsg: `column "x" holds 3 NaN or infinite values: choose nonfinite "null" or "clip"`},
		{name: "error", feature: map[string]any{"column": "x", "nonfinite": "error"}, wantField: "features[0].column",
			wantMsg: `column "x" holds 3 NaN or infinite values`},
		{name: "null without imputation", feature: map[string]any{"column": "x", "nonfinite": "null"}, wantField: "features[0].impute",
			wantMsg: `column "x" has 3 NULLs (with the NaN or infinite values nonfinite makes NULL): choose impute mean, median or constant`},
		{name: "clip without imputation", feature: map[string]any{"column": "x", "nonfinite": "clip"}, wantField: "features[0].impute",
			wantMsg: `column "x" has 1 NULLs (with the NaN or infinite values nonfinite makes NULL)`},
		{name: "unknown option", feature: map[string]any{"column": "x", "nonfinite": "zero"}, wantField: "features[0].nonfinite",
			wantMsg: `unknown option "zero" (want error, null or clip)`},
		{name: "null", feature: map[string]any{"column": "x", "nonfinite": "null", "impute": "median", "scale": "standard"}},
		{name: "clip", feature: map[string]any{"column": "x", "nonfinite": "clip", "impute": "mean", "scale": "minmax"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := r.cl.Submit(ctx, typedSpec(t, "wild", tt.feature))
			if tt.wantField != "" {
				ae := apiErr(t, err)
				if ae.Status != http.StatusBadRequest || ae.Field != tt.wantField || !strings.Contains(ae.Message, tt.wantMsg) {
					t.Fatalf("got %d %q %q, want 400 %q saying %q", ae.Status, ae.Field, ae.Message, tt.wantField, tt.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			p, err := r.cl.Plan(ctx, st.ID)
			if err != nil {
				t.Fatal(err)
			}
			x := p.Features[0]
			// 1..10: mean 5.5, population variance 8.25, median 5.5.
			want := messages.Stats{Count: 10, Nulls: 0, Mean: 5.5, StdDev: math.Sqrt(8.25), Min: 1, Max: 10, NonFinite: 3}
			if tt.feature["impute"] == "median" { // computed only when it is used
				want.Median = 5.5
			}
			if x.Stats != want || x.Impute != 5.5 || !x.HasImpute || x.NonFinite != tt.feature["nonfinite"] {
				t.Fatalf("x: %+v\nwant stats %+v, impute 5.5", x, want)
			}
		})
	}
}

// An array column holds arrays of one length; a row with another is named by its key.
func TestArrayOfAnotherLengthIsNamedByKey(t *testing.T) {
	e := newEnv(t)
	e.exec(t, `create table arrs (id int primary key, emb real[], y float8)`)
	e.exec(t, `insert into arrs select i, array[i, i, i]::real[], i from generate_series(1, 50) i`)
	e.exec(t, `update arrs set emb = array[1, 2]::real[] where id = 37`)
	e.exec(t, `create table flat (id int primary key, emb real[], y float8)`)
	e.exec(t, `insert into flat select i, case when i = 3 then '{}'::real[] end, i from generate_series(1, 5) i`)
	e.exec(t, `create table notype (id int primary key, doc jsonb, name text, n float8, y float8)`)
	r := start(t, e, Config{})
	tests := []struct {
		name, table string
		feature     map[string]any
		field, msg  string
	}{
		{"wrong length", "arrs", map[string]any{"column": "emb"}, "features[0].column",
			`array column "emb" must hold arrays of one length: row key 37 has 2 elements (or more than one dimension), others have 3`},
		{"empty array", "flat", map[string]any{"column": "emb", "impute": "constant", "impute_value": 0}, "features[0].column",
			`array column "emb" holds an empty array`},
		{"jsonb", "notype", map[string]any{"column": "doc"}, "features[0].column",
			`column "doc" is jsonb, which pgtrain does not read as numbers (it reads numbers, boolean, date, timestamp, timestamptz, real[] and float8[]): select it as one of those in a view`},
		{"text", "notype", map[string]any{"column": "name"}, "features[0].encode",
			`column "name" is text, not numeric: use encode "onehot", or "hash" for many distinct values`},
		{"cyclical number", "notype", map[string]any{"column": "n", "encode": "cyclical"}, "features[0].encode",
			`column "n" is double precision: encode "cyclical" takes a date, timestamp or timestamptz column`},
		{"hash without buckets", "notype", map[string]any{"column": "name", "encode": "hash"}, "features[0].buckets",
			`is required with encode "hash"`},
		{"buckets over the limit", "notype", map[string]any{"column": "name", "encode": "hash", "buckets": 10001}, "features[0].buckets",
			`10001 is over this coordinator's limit of 10000`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.cl.Submit(context.Background(), typedSpec(t, tt.table, tt.feature))
			ae := apiErr(t, err)
			if ae.Status != http.StatusBadRequest || ae.Field != tt.field || !strings.Contains(ae.Message, tt.msg) {
				t.Fatalf("got %d %q %q, want 400 %q saying %q", ae.Status, ae.Field, ae.Message, tt.field, tt.msg)
			}
		})
	}
}

// A category whose frequent values are megabytes long is a 400 naming the column (a plan
// carrying it could not be stored, and retrying would plan the table again); hashed, the
// same column plans.
func TestLongVocabularyValuesAreRefused(t *testing.T) {
	e := newEnv(t)
	e.exec(t, `create table blobs (id int primary key, c text, y float8)`)
	e.exec(t, `insert into blobs select i, case when i % 2 = 0 then repeat('x', 2000000) else 'short' end, i from generate_series(1, 20) i`)
	r := start(t, e, Config{Limits: Limits{VocabValueBytes: 4096}})
	ctx := context.Background()
	_, err := r.cl.Submit(ctx, typedSpec(t, "blobs", map[string]any{"column": "c", "encode": "onehot"}))
	ae := apiErr(t, err)
	want := `column "c" has a value of 2000000 bytes among its most frequent, over this coordinator's limit of 4096 bytes per vocabulary value (--max-vocab-value-bytes): use encode "hash" with buckets for such values`
	if ae.Status != http.StatusBadRequest || ae.Field != "features[0].column" || ae.Message != want {
		t.Fatalf("got %d %q %q, want 400 features[0].column %q", ae.Status, ae.Field, ae.Message, want)
	}
	st, err := r.cl.Submit(ctx, typedSpec(t, "blobs", map[string]any{"column": "c", "encode": "hash", "buckets": 4}))
	if err != nil {
		t.Fatalf("hashed: %v", err)
	}
	if st.Rows != 20 {
		t.Fatalf("hashed: %+v", st)
	}
}

// An array's per-element statistics and transforms show the table's values: a caller
// without the data scope sees only how many elements there are.
func TestWithoutDataStripsArrayElements(t *testing.T) {
	p := &messages.Plan{Features: []messages.ColumnPlan{{Name: "e", Type: messages.TypeFloat4Array, Elements: []messages.ElementPlan{
		{HasImpute: true, Impute: 3, Offset: 1, Factor: 2, Stats: messages.Stats{Count: 5, Mean: 3, Max: 9}}, {Offset: 4}}}}}
	got := withoutData(p).Features[0].Elements
	if len(got) != 2 || got[0] != (messages.ElementPlan{}) || got[1] != (messages.ElementPlan{}) {
		t.Fatalf("elements without data: %+v", got)
	}
	if p.Features[0].Elements[0].Impute != 3 {
		t.Fatal("withoutData changed the stored plan")
	}
}
