package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/coordinator/client"
	"pgtrain/internal/demo"
	"pgtrain/internal/testenv"
	"pgtrain/messages"
)

// sinceKeysTable makes since_keys: n rows keyed both by a text key tk and by (tenant, id),
// both text columns in the ICU collation en-x-icu, whose order differs from "C" (case is
// a tertiary difference, '_' sorts before '-').
func sinceKeysTable(t *testing.T, pool *pgxpool.Pool, n int) {
	t.Helper()
	for _, s := range []string{
		`create table since_keys (tk text collate "en-x-icu" not null, tenant text collate "en-x-icu" not null, id int not null,
			a real, b double precision, y real)`,
		fmt.Sprintf(`insert into since_keys select (array['apple','Banana','cherry','Date'])[1 + i %% 4] || '-' || md5(i::text),
			'tenant-' || (i %% 7), i, (i %% 101) / 100.0, (i %% 37) / 3.0, 0 from generate_series(1, %d) i`, n),
		`create unique index on since_keys (tk)`,
		`create unique index on since_keys (tenant, id)`,
	} {
		if _, err := pool.Exec(context.Background(), s); err != nil {
			t.Fatal(err)
		}
	}
}

// sinceKeysSpec is a job on since_keys keyed by key (a JSON string or list).
func sinceKeysSpec(t *testing.T, key string, fields map[string]any) []byte {
	t.Helper()
	body := demo.Job{
		Table: "since_keys", Key: "id",
		Features:     []messages.FeatureSpec{{Column: "a", Scale: "standard"}, {Column: "b", Scale: "minmax"}},
		Label:        "y",
		Layers:       []demo.Layer{demo.Dense(8, "relu", "h"), demo.Dense(1, "", "out")},
		LearningRate: 0.01, Epochs: 1, BatchSize: 64, Seed: 5,
		RangeRows: 500, PageRows: 200, ValidationSplit: 0.2,
	}.JSON()
	all := map[string]any{"key": json.RawMessage(key)}
	for k, v := range fields {
		all[k] = v
	}
	return withFields(t, body, all)
}

// since "last" on a typed key reads exactly the keys after the stored model's last key in
// the key's own order and collation: rows added after it under the ICU order but before it
// under "C" are read, rows added before it under the ICU order but after it under "C" are
// not. The job's checksum is compared with SQL's over the same row comparison, and its
// count with the rows inserted to sort after; on the unchanged table the job is
// nothing_new; a table whose key changed type is refused naming the key.
func TestSinceLastTypedKeys(t *testing.T) {
	pool, _ := testenv.Pool(t)
	natsURL := testenv.NATS(t)
	sinceKeysTable(t, pool, 2000)
	cl := startCluster(t, pool, natsURL)
	ctx := context.Background()
	text := func(name string) messages.KeyColumn {
		return messages.KeyColumn{Name: name, Type: "text", Collation: `"pg_catalog"."en-x-icu"`}
	}
	tests := []struct {
		name, key string
		cols      []messages.KeyColumn
		// lastSQL selects the table's greatest key as text; afterSQL is the condition "after
		// the key in $1.."; cAfterSQL the same under "C", which must select other rows.
		lastSQL, afterSQL, cAfterSQL string
		// inserts add rows: want of them sort after the last key.
		inserts []string
		want    int64
	}{
		{
			name: "text en-x-icu", key: `"tk"`, cols: []messages.KeyColumn{text("tk")},
			lastSQL:   `select tk from since_keys order by tk desc limit 1`,
			afterSQL:  `tk > $1`,
			cAfterSQL: `tk collate "C" > $1 collate "C"`,
			inserts: []string{
				// After 'Date-<md5>' under ICU ('x' follows every hex digit), before it under C ('A' < 'a').
				`insert into since_keys select 'DATE-x' || i, 'new-' || i, i, 0.5, 1, 0 from generate_series(1, 60) i`,
				// After it under both.
				`insert into since_keys select 'dog-' || i, 'new-' || i, 100 + i, 0.25, 2, 0 from generate_series(1, 40) i`,
				// Before it under ICU ('b' < 'd'), after it under C ('b' > 'D').
				`insert into since_keys select 'banana-new-' || i, 'new-' || i, 200 + i, 0.75, 3, 0 from generate_series(1, 30) i`,
			},
			want: 100,
		},
		{
			name: "composite (tenant, id)", key: `["tenant", "id"]`, cols: []messages.KeyColumn{text("tenant"), {Name: "id", Type: "integer"}},
			lastSQL:   `select tenant, id::text from since_keys s order by s.tenant desc, s.id desc limit 1`,
			afterSQL:  `(tenant, id) > ($1, $2::int)`,
			cAfterSQL: `(tenant collate "C", id) > ($1 collate "C", $2::int)`,
			inserts: []string{
				// The last tenant's new ids follow its last id; another tenant's do not.
				`insert into since_keys select 'tk-six-' || i, 'tenant-6', 5000 + i, 0.5, 1, 0 from generate_series(1, 50) i`,
				`insert into since_keys select 'tk-two-' || i, 'tenant-2', 5000 + i, 0.5, 1, 0 from generate_series(1, 20) i`,
				// After 'tenant-6' under ICU ('z' follows digits), before it under C ('T' < 't').
				`insert into since_keys select 'tk-upper-' || i, 'TENANT-z', i, 0.25, 2, 0 from generate_series(1, 30) i`,
				// Before it under ICU ('_' sorts before '-'), after it under C.
				`insert into since_keys select 'tk-under-' || i, 'tenant_x', i, 0.75, 3, 0 from generate_series(1, 25) i`,
			},
			want: 80,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first := trainDone(t, cl, sinceKeysSpec(t, tt.key, nil))
			meta := storedMeta(t, cl, first.ID)
			last := make([]string, len(tt.cols))
			dest := make([]any, len(last))
			for i := range last {
				dest[i] = &last[i]
			}
			if err := pool.QueryRow(ctx, tt.lastSQL).Scan(dest...); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(meta.LastKeyText, last) || !slices.Equal(meta.KeyColumns, tt.cols) {
				t.Fatalf("the stored model records last key %q of key %+v; the table's greatest is %q of %+v", meta.LastKeyText, meta.KeyColumns, last, tt.cols)
			}
			for _, s := range append(tt.inserts, `update since_keys set y = (a * 2 - b * 0.3)::real`) {
				if _, err := pool.Exec(ctx, s); err != nil {
					t.Fatal(err)
				}
			}
			args := make([]any, len(last))
			for i, v := range last {
				args[i] = v
			}
			want := checksumWhere(t, pool, tt.cols, "where "+tt.afterSQL, args)
			cWant := checksumWhere(t, pool, tt.cols, "where "+tt.cAfterSQL, args)
			if want.Rows != tt.want || cWant == want {
				t.Fatalf("SQL counts %d rows after %q (want %d); under C %d: the inserts do not test the collation", want.Rows, last, tt.want, cWant.Rows)
			}

			next := trainDone(t, cl, sinceKeysSpec(t, tt.key, map[string]any{"init_from": first.ID, "since": "last", "validation_split": 0}))
			if len(next.Results) != 1 {
				t.Fatalf("%d epoch results, want 1", len(next.Results))
			}
			seen := next.Results[0].Seen
			seen.Merge(next.Results[0].SeenValid)
			if seen != want {
				t.Fatalf("the job read keys %+v, SQL says the keys after %q are %+v", seen, last, want)
			}
			ws := next.WarmStart
			if ws == nil || ws.Since != "last" || !slices.Equal(ws.AfterKeyText, last) || ws.RowsBefore != meta.Rows || ws.Rows != tt.want {
				t.Fatalf("warm start %+v: want since last after %q, %d rows before, %d now", ws, last, meta.Rows, tt.want)
			}
			nextLast := make([]string, len(last))
			for i := range nextLast {
				dest[i] = &nextLast[i]
			}
			if err := pool.QueryRow(ctx, tt.lastSQL).Scan(dest...); err != nil {
				t.Fatal(err)
			}
			if m := storedMeta(t, cl, next.ID); !slices.Equal(m.LastKeyText, nextLast) || m.Rows != tt.want {
				t.Fatalf("the new model records last key %q and %d rows, want %q and %d", m.LastKeyText, m.Rows, nextLast, tt.want)
			}

			st, err := cl.Client.Submit(ctx, sinceKeysSpec(t, tt.key, map[string]any{"init_from": next.ID, "since": "last"}))
			if err != nil {
				t.Fatal(err)
			}
			if st.State != messages.JobNothingNew || !strings.Contains(st.Reason, "nothing new") || !strings.Contains(st.Reason, nextLast[0]) || st.Ranges != 0 {
				t.Fatalf("job on an unchanged table: state %q, reason %q, %d ranges; want nothing_new after %q", st.State, st.Reason, st.Ranges, nextLast)
			}
		})
	}

	// The key's type or collation changed since the model was read: its text would be cast
	// to another type or compared in another order, so the job is refused naming the key.
	text1 := trainDone(t, cl, sinceKeysSpec(t, `"tk"`, nil))
	composite1 := trainDone(t, cl, sinceKeysSpec(t, `["tenant", "id"]`, nil))
	for _, tt := range []struct {
		alter, key, model, wantIn string
	}{
		{`alter table since_keys alter column tk type varchar(80) collate "en-x-icu"`, `"tk"`, text1.ID, "character varying(80)"},
		{`alter table since_keys alter column tenant type text collate "C"`, `["tenant", "id"]`, composite1.ID, `"pg_catalog"."C"`},
	} {
		if _, err := pool.Exec(ctx, tt.alter); err != nil {
			t.Fatal(err)
		}
		_, err := cl.Client.Submit(ctx, sinceKeysSpec(t, tt.key, map[string]any{"init_from": tt.model, "since": "last"}))
		var ae *client.APIError
		if !errors.As(err, &ae) || ae.Status != 400 || ae.Field != "key" || !strings.Contains(ae.Message, tt.wantIn) || !strings.Contains(ae.Message, tt.model) {
			t.Fatalf("after %s: got %v (%+v), want 400 on field key naming %s and the model", tt.alter, err, ae, tt.wantIn)
		}
	}
}

// checksumWhere is the checksum of since_keys' key hashes over the rows where selects,
// with its parameters args.
func checksumWhere(t *testing.T, pool *pgxpool.Pool, cols []messages.KeyColumn, where string, args []any) messages.KeyChecksum {
	t.Helper()
	h := messages.KeyHashSQL(cols) + "::numeric"
	return checksumOf(t, pool, "since_keys", h, where, args...)
}
