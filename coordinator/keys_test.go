package coordinator

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"pgtrain/fetcher"
	"pgtrain/messages"
)

// KeyHash (Go) and KeyHashSQL (PostgreSQL) agree on every key type, and a key's text casts
// back to the same value, whatever the session's TimeZone and DateStyle: the expected
// checksums are PostgreSQL's and the seen ones Go's.
func TestKeyHashSameInSQLAndGo(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	conn, err := e.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "set timezone = 'Asia/Kolkata'; set datestyle = 'SQL, DMY'"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		typ, form string
		values    []string // SQL literals of the type
	}{
		{"bigint", "", []string{"0", "-9223372036854775808", "9223372036854775807"}},
		{"integer", "", []string{"-7", "42"}},
		{"numeric", "", []string{"1.50", "-0.000001", "123456789012345678901234567890.5", "'NaN'"}},
		{"text", "", []string{"''", "'O''Brien; drop table x'", "'Ünïcödé ✓'", "'a' || chr(10) || 'b'"}},
		{"character varying(20)", "", []string{"'slug-1'"}},
		{"character(4)", "", []string{"'ab'"}},
		{"uuid", "", []string{"'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "md5('x')::uuid"}},
		{"date", messages.KeyFormDate, []string{"'2024-02-29'", "'1970-01-01'"}},
		{"timestamp without time zone", messages.KeyFormTimestamp, []string{"'2024-02-29 23:59:59.999999'", "'2000-01-01 00:00:00'"}},
		{"timestamp with time zone", messages.KeyFormTimestamptz, []string{"'2024-03-31 01:30:00.5+00'", "'2024-10-27 02:30:00.000001+02'"}},
	}
	for _, tt := range tests {
		for _, v := range tt.values {
			cols := []messages.KeyColumn{{Name: "k", Type: tt.typ, Form: tt.form}}
			var text string
			var sqlHash int64
			var same bool
			q := "select " + cols[0].TextSQL() + ", " + messages.KeyHashSQL(cols) + ", k = " + cols[0].ValueSQL(1) +
				" from (select (" + v + ")::" + tt.typ + " as k) s"
			// The text goes back in as the parameter, as a bound or a resume point does.
			if err := conn.QueryRow(ctx, "select "+cols[0].TextSQL()+" from (select ("+v+")::"+tt.typ+" as k) s").Scan(&text); err != nil {
				t.Fatalf("%s %s: %v", tt.typ, v, err)
			}
			if err := conn.QueryRow(ctx, q, text).Scan(&text, &sqlHash, &same); err != nil {
				t.Fatalf("%s %s: %v", tt.typ, v, err)
			}
			if goHash := messages.KeyHash([]string{text}); goHash != sqlHash {
				t.Errorf("%s %q: SQL hash %d, Go hash %d", tt.typ, text, sqlHash, goHash)
			}
			if !same {
				t.Errorf("%s %s: its text %q does not cast back to it", tt.typ, v, text)
			}
		}
	}
	// A composite key: the length prefixes keep ("ab", "c") and ("a", "bc") apart.
	cols := []messages.KeyColumn{{Name: "a", Type: "text"}, {Name: "b", Type: "text"}, {Name: "c", Type: "timestamp with time zone", Form: messages.KeyFormTimestamptz}}
	var h1, h2 int64
	var ts string
	if err := conn.QueryRow(ctx, "select "+messages.KeyHashSQL(cols)+", "+cols[2].TextSQL()+" from (select 'ab' as a, 'c' as b, '2024-01-01 00:00:00+00'::timestamptz as c) s").Scan(&h1, &ts); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "select "+messages.KeyHashSQL(cols)+" from (select 'a' as a, 'bc' as b, '2024-01-01 00:00:00+00'::timestamptz as c) s").Scan(&h2); err != nil {
		t.Fatal(err)
	}
	if h1 == h2 || h1 != messages.KeyHash([]string{"ab", "c", ts}) || h2 != messages.KeyHash([]string{"a", "bc", ts}) {
		t.Fatalf("composite hashes: SQL %d and %d, Go %d and %d", h1, h2, messages.KeyHash([]string{"ab", "c", ts}), messages.KeyHash([]string{"a", "bc", ts}))
	}
	if ts != "2024-01-01 00:00:00.000000" {
		t.Fatalf("timestamptz key text %q depends on the session's time zone", ts)
	}
}

// A key must order and identify the rows: a non-unique key (a plain index, or a view with
// a repeated key) is a 400 naming the key and saying why, at submit, not a failed job later.
func TestKeyMustBeUnique(t *testing.T) {
	e := newEnv(t)
	e.exec(t, `create table repeated as select i / 100 as id, md5(i::text) as slug, i::float8 as x, i::float8 as y from generate_series(0, 999) i`)
	e.exec(t, `create index on repeated (id)`)
	e.exec(t, `create unique index on repeated (slug)`)
	e.exec(t, `create index on repeated (slug, id)`)
	e.exec(t, `create view repeated_view as select * from repeated`)
	e.exec(t, `create view unique_view as select * from repeated where id = 3`)
	r := start(t, e, Config{})
	spec := func(table, key string) []byte {
		return []byte(`{"table":"` + table + `","key":` + key + `,"features":[{"column":"x"}],"label":"y",
			"model":{"layers":[{"type":"dense","units":1}]},"loss":"mse","epochs":1,"batch_size":16}`)
	}
	for _, tt := range []struct {
		table, key string
		want       []string
	}{
		{"repeated", `"id"`, []string{`column "id" is not unique`, "no unique index or primary key", "create unique index on"}},
		{"repeated", `["id", "slug"]`, []string{`the key ("id", "slug") is not the leading part of a btree index`}},
		{"repeated_view", `"id"`, []string{`column "id" is not unique in public.repeated_view`, "the key (0) is on more than one row"}},
		{"repeated", `["id","slug","x","y"]`, []string{"4 columns; a key has at most 3"}},
		{"repeated", `"x"`, []string{`column "x" is double precision; a key column must be`}},
	} {
		_, err := r.cl.Submit(context.Background(), spec(tt.table, tt.key))
		ae := apiErr(t, err)
		if ae.Status != http.StatusBadRequest || ae.Field != "key" {
			t.Errorf("%s key %s: got %d field %q (%s), want 400 on key", tt.table, tt.key, ae.Status, ae.Field, ae.Message)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(ae.Message, w) {
				t.Errorf("%s key %s: %q does not say %q", tt.table, tt.key, ae.Message, w)
			}
		}
	}
	// A unique index on the key's columns (or a subset of them) makes any key unique; a view
	// with distinct keys passes its check.
	for _, ok := range [][]byte{spec("repeated", `"slug"`), spec("repeated", `["slug", "id"]`), spec("unique_view", `"slug"`)} {
		if _, err := r.cl.Submit(context.Background(), ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}

// Text keys in a non-C collation, most of them sharing a prefix, still split into ranges
// of about equal rows: the cuts are row positions in the collation's order, not values.
func TestSkewedTextKeysSplitEvenly(t *testing.T) {
	e := newEnv(t)
	e.exec(t, `create table skewed (k text collate "en-x-icu" primary key, x float8, y float8)`)
	e.exec(t, `insert into skewed select case when i % 10 = 0 then 'Zeta-' else 'aaaa-' end || md5(i::text), i, i
		from generate_series(1, 20000) i`)
	r := start(t, e, Config{})
	ctx := context.Background()
	st, err := r.cl.Submit(ctx, []byte(`{"table":"skewed","key":"k","features":[{"column":"x"}],"label":"y","range_rows":1000,
		"model":{"layers":[{"type":"dense","units":1}]},"loss":"mse","epochs":1,"batch_size":16}`))
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.cl.Plan(ctx, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.KeyColumns) != 1 || p.KeyColumns[0].Type != "text" || len(p.Ranges) != 20 {
		t.Fatalf("key columns %+v, %d ranges; want one text column, 20 ranges", p.KeyColumns, len(p.Ranges))
	}
	var total int64
	for i, rg := range p.Ranges {
		total += rg.Rows
		if rg.Rows < 800 || rg.Rows > 1200 {
			t.Errorf("range %d holds %d rows, want 1000 ± 20%%", i, rg.Rows)
		}
		if (i == 0) != (rg.After == nil) || (i == len(p.Ranges)-1) != (rg.Through == nil) || i > 0 && rg.After[0] != p.Ranges[i-1].Through[0] {
			t.Errorf("range %d: after %q through %q do not continue the previous range", i, rg.After, rg.Through)
		}
	}
	if total != 20000 || p.Expected.Rows+p.ExpectedValid.Rows != 20000 {
		t.Fatalf("ranges hold %d rows, the checksums %d; want 20000", total, p.Expected.Rows+p.ExpectedValid.Rows)
	}
	// The collation orders the ranges: 'aaaa-' < 'Zeta-' in en-x-icu (in "C" 'Z' comes first).
	if !strings.HasPrefix(p.Ranges[0].Through[0], "aaaa-") || !strings.HasPrefix(p.Ranges[len(p.Ranges)-2].Through[0], "Zeta-") {
		t.Fatalf("first range ends at %q, the last but one at %q: not the column's collation order", p.Ranges[0].Through[0], p.Ranges[len(p.Ranges)-2].Through[0])
	}
}

// Every range of a composite key, read page by page as a fetcher reads it, holds exactly
// the rows and checksum planned: the planner's cuts and the fetcher's row comparisons
// agree on the key's order.
func TestCompositeKeyRangesReadAsPlanned(t *testing.T) {
	e := newEnv(t)
	e.exec(t, `create table tenants as select 'tenant-' || (i % 13) as tenant, i, (i % 7)::float8 as x, i::float8 as y
		from generate_series(1, 6000) i`)
	e.exec(t, `alter table tenants add primary key (tenant, i)`)
	r := start(t, e, Config{})
	ctx := context.Background()
	st, err := r.cl.Submit(ctx, []byte(`{"table":"tenants","key":["tenant","i"],"features":[{"column":"x"}],"label":"y",
		"range_rows":900,"validation_split":0.2,"page_rows":250,
		"model":{"layers":[{"type":"dense","units":1}]},"loss":"mse","epochs":1,"batch_size":16}`))
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.cl.Plan(ctx, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	rr, err := fetcher.NewRangeReader(e.pool, p, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var all messages.KeyChecksum
	for _, rg := range p.Ranges {
		var got messages.KeyChecksum
		var last []string
		for page := 0; ; page++ {
			pg, err := rr.ReadPage(ctx, 0, rg, page, 0, last)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range pg.Batch.Keys {
				got.Add(k)
			}
			last = pg.LastKeyText
			if pg.Batch.Last {
				break
			}
		}
		if got.Rows != rg.Rows {
			t.Errorf("range %d (after %q through %q): read %d rows, planned %d", rg.Index, rg.After, rg.Through, got.Rows, rg.Rows)
		}
		all.Merge(got)
	}
	want := p.Expected
	want.Merge(p.ExpectedValid)
	if all != want {
		t.Fatalf("read %+v, planned %+v", all, want)
	}
}

// Filters keep the same rows for the statistics and the ranges; hostile values (quotes,
// semicolons, casts) are data compared with the column, and bad filters are 400s naming
// the filter.
func TestWhereFilters(t *testing.T) {
	e := newEnv(t)
	e.exec(t, `create table notes as select i as id, case when i % 3 = 0 then 'x''); drop table notes; --' else 'n' || (i % 5) end as tag,
		case when i % 10 = 0 then null else i end::float8 as x, i::float8 as y from generate_series(1, 1000) i`)
	e.exec(t, `alter table notes add primary key (id)`)
	r := start(t, e, Config{Limits: Limits{Filters: 3, InValues: 2}})
	ctx := context.Background()
	spec := func(where string) []byte {
		return []byte(`{"table":"notes","key":"id","features":[{"column":"x","impute":"mean"}],"label":"y","where":` + where + `,
			"model":{"layers":[{"type":"dense","units":1}]},"loss":"mse","epochs":1,"batch_size":16}`)
	}
	where := `[{"column":"tag","op":"in","value":["x'); drop table notes; --","n1"]},
		{"column":"tag","op":"!=","value":"n1'::int; select pg_sleep(5); --"},
		{"column":"id","op":"<=","value":600}]`
	st, err := r.cl.Submit(ctx, spec(where))
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.cl.Plan(ctx, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	var rows, xs int64
	if err := e.pool.QueryRow(ctx, `select count(*), count(x) from notes where tag in ('x''); drop table notes; --', 'n1') and id <= 600`).Scan(&rows, &xs); err != nil {
		t.Fatal(err)
	}
	if rows < 100 || p.Expected.Rows+p.ExpectedValid.Rows != rows || p.Label.Stats.Count != rows || p.Features[0].Stats.Count != xs {
		t.Fatalf("planned %d rows, label count %d, x count %d; SQL says %d rows, %d x", p.Expected.Rows+p.ExpectedValid.Rows,
			p.Label.Stats.Count, p.Features[0].Stats.Count, rows, xs)
	}
	if len(p.Where) != 3 || p.Where[1].Values[0] != "n1'::int; select pg_sleep(5); --" {
		t.Fatalf("planned filters %+v", p.Where)
	}
	for _, tt := range []struct{ where, field, want string }{
		{`[{"column":"id","op":">","value":1},{"column":"id","op":">","value":2},{"column":"id","op":">","value":3},{"column":"id","op":">","value":4}]`, "where", "4 filters, at most 3"},
		{`[{"column":"id","op":"in","value":[1,2,3]}]`, "where[0].value", "3 values, at most 2"},
		{`[{"column":"id","op":"like","value":"1"}]`, "where[0].op", `op "like" is not one of`},
		{`[{"column":"id","op":"is_null","value":1}]`, "where[0].op", `takes no value`},
		{`[{"column":"nope","op":"=","value":1}]`, "where[0].column", `no column "nope"`},
		{`[{"column":"id","op":"=","value":{"a":1}}]`, "where[0].op", `is not a string, a number or a boolean`},
	} {
		_, err := r.cl.Submit(ctx, spec(tt.where))
		ae := apiErr(t, err)
		if ae.Status != http.StatusBadRequest || ae.Field != tt.field || !strings.Contains(ae.Message, tt.want) {
			t.Errorf("%s: got %d field %q (%s), want 400 field %q saying %q", tt.where, ae.Status, ae.Field, ae.Message, tt.field, tt.want)
		}
	}
}
