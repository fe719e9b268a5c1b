package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/internal/testenv"
)

// columnTypes is each named column of table as format_type writes it, with its collation
// when it has one other than the default.
func columnTypes(t *testing.T, pool *pgxpool.Pool, table string, cols []string) []string {
	t.Helper()
	var out []string
	err := pool.QueryRow(context.Background(), `
select array_agg(format_type(a.atttypid, a.atttypmod) ||
       coalesce(' collate ' || nullif(co.collname, 'default'), '') order by array_position($2::text[], a.attname::text))
from pg_attribute a left join pg_collation co on co.oid = a.attcollation
where a.attrelid = $1::regclass and a.attname = any($2::text[])`, table, cols).Scan(&out)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// primaryKey is the columns of table's primary key, in order, or nil.
func primaryKey(t *testing.T, pool *pgxpool.Pool, table string) []string {
	t.Helper()
	var out []string
	err := pool.QueryRow(context.Background(), `
select array_agg(a.attname::text order by k.n)
from pg_index i, unnest(i.indkey::int2[]) with ordinality k(attnum, n), pg_attribute a
where i.indrelid = $1::regclass and i.indisprimary and a.attrelid = i.indrelid and a.attnum = k.attnum`, table).Scan(&out)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A model trained on keyed's integer key scores keyed through every other kind of key:
// the output table has the key's columns with the source's types (and the text key's ICU
// collation) as its primary key, holds every source key once, and each row's value is the
// integer-key run's for the same row; with 1 and 3 scorers, in every output mode. A
// filtered prediction writes exactly the filtered keys, and an evaluation with the same
// filters counts exactly those rows.
func TestTypedKeysPrediction(t *testing.T) {
	pool, _ := testenv.Pool(t)
	natsURL := testenv.NATS(t)
	const rows = 3000
	keyedTable(t, pool, rows)
	ctx := context.Background()
	modelID := runJob(t, pool, natsURL, 2, 1, 2<<20, keyedSpec(t, `"i"`, "")).status.ID

	predict := func(scorers int, key, output, mode, where string) {
		t.Helper()
		body := fmt.Sprintf(`{"model": %q, "table": "keyed", "key": %s, "output": %q, "mode": %q, "range_rows": 700, "page_rows": 200`,
			modelID, key, output, mode)
		if where != "" {
			body += `, "where": ` + where
		}
		st := predictOnce(t, pool, natsURL, scorers, body+"}")
		t.Logf("key %s, %d scorer(s), mode %s: %d rows in %d ranges", key, scorers, mode, st.Prediction.Written.Rows, st.Ranges)
	}
	predict(2, `"i"`, "scores_i", "create", "")
	if got := primaryKey(t, pool, "scores_i"); strings.Join(got, ",") != "i" {
		t.Fatalf("scores_i's primary key is %v, want (i)", got)
	}

	hostile := `[{"column": "tenant", "op": "in", "value": ["tenant-1", "tenant-2", "tenant-3'); drop table keyed; --"]},
		{"column": "tk", "op": "!=", "value": "x'::int; select pg_sleep(10) --"}, {"column": "b", "op": ">=", "value": 2}]`
	tests := []struct {
		name, key string
		cols      []string
		mode      string
		scorers   []int
		// where filters the prediction, sqlWhere the expected rows the same way.
		where, sqlWhere string
	}{
		{"text en-x-icu", `"tk"`, []string{"tk"}, "create", []int{1, 3}, "", "true"},
		{"uuid", `"uk"`, []string{"uk"}, "replace", []int{1}, "", "true"},
		{"timestamptz with ties, then integer", `["ts", "i"]`, []string{"ts", "i"}, "create", []int{3}, "", "true"},
		{"composite (tenant, i)", `["tenant", "i"]`, []string{"tenant", "i"}, "append", []int{1, 3}, "", "true"},
		{"numeric", `"nk"`, []string{"nk"}, "create", []int{2}, "", "true"},
		{"date", `"dk"`, []string{"dk"}, "append", []int{2}, "", "true"},
		{"timestamp", `"tsk"`, []string{"tsk"}, "create", []int{2}, "", "true"},
		{"composite, filtered with hostile values", `["tenant", "i"]`, []string{"tenant", "i"}, "create", []int{1, 3},
			hostile, "k.tenant in ('tenant-1', 'tenant-2') and k.b >= 2"},
	}
	for ti, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var want int64
			if err := pool.QueryRow(ctx, "select count(*) from keyed k where "+tt.sqlWhere).Scan(&want); err != nil {
				t.Fatal(err)
			}
			if want == 0 || tt.where != "" && want >= rows {
				t.Fatalf("the case keeps %d of %d rows", want, rows)
			}
			for _, scorers := range tt.scorers {
				out := fmt.Sprintf("scores_%d_%d", ti, scorers)
				predict(scorers, tt.key, out, tt.mode, tt.where)
				if got, src := columnTypes(t, pool, out, tt.cols), columnTypes(t, pool, "keyed", tt.cols); strings.Join(got, "|") != strings.Join(src, "|") {
					t.Fatalf("%s's key columns are %q, keyed's %q", out, got, src)
				}
				if got := primaryKey(t, pool, out); strings.Join(got, ",") != strings.Join(tt.cols, ",") {
					t.Fatalf("%s's primary key is %v, want %v", out, got, tt.cols)
				}
				ident := pgx.Identifier{out}.Sanitize()
				join := make([]string, len(tt.cols))
				for i, c := range tt.cols {
					q := pgx.Identifier{c}.Sanitize()
					join[i] = "o." + q + " = k." + q
				}
				// Every output row is one source row that the filters keep, scored as
				// the integer-key run scored it.
				var n, matched, same, missing int64
				err := pool.QueryRow(ctx, `select (select count(*) from `+ident+`),
					count(k.i), count(*) filter (where o.value = s.value),
					(select count(*) from keyed k where (`+tt.sqlWhere+`) and not exists (select 1 from `+ident+` o where `+strings.Join(join, " and ")+`))
					from `+ident+` o left join keyed k on `+strings.Join(join, " and ")+` and (`+tt.sqlWhere+`)
					left join scores_i s on s.i = k.i`).Scan(&n, &matched, &same, &missing)
				if err != nil {
					t.Fatal(err)
				}
				if n != want || matched != want || same != want || missing != 0 {
					t.Fatalf("%d scorers: %s has %d rows, %d of them keys of the %d filtered rows, %d with the integer-key run's value; %d rows missing",
						scorers, out, n, matched, want, same, missing)
				}
			}
		})
	}

	// pgtrain evaluate with the same filters reads exactly the filtered rows.
	var want int64
	if err := pool.QueryRow(ctx, "select count(*) from keyed k where "+tests[len(tests)-1].sqlWhere).Scan(&want); err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"model": %q, "table": "keyed", "key": ["tenant", "i"], "evaluate": true, "range_rows": 700, "where": %s}`, modelID, hostile)
	ev := predictOnce(t, pool, natsURL, 2, body).Prediction
	if ev.Output != "" || ev.Written.Rows != want || ev.Loss == nil {
		t.Fatalf("filtered evaluation %+v, want %d rows, a loss and no output", ev, want)
	}
}
