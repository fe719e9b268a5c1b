package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/internal/demo"
	"pgtrain/internal/testenv"
	"pgtrain/messages"
)

// keyedTable makes a table of n rows keyed by every accepted kind of key at once (each its
// own unique index), with features and a label that do not depend on the key.
func keyedTable(t *testing.T, pool *pgxpool.Pool, n int) {
	t.Helper()
	ctx := context.Background()
	for _, s := range []string{
		`create table keyed (
			i int not null,
			tk text collate "en-x-icu" not null,
			uk uuid not null,
			ts timestamptz not null,
			tenant text not null,
			nk numeric(12, 3) not null, dk date not null, tsk timestamp not null, vk varchar(40) not null,
			a real, b double precision, y real)`,
		// Text keys mix cases, so the ICU order differs from "C"; timestamps repeat, seven
		// rows to a microsecond, so (ts, i) is the key; a tenant holds many rows.
		fmt.Sprintf(`insert into keyed select i,
			(array['apple','Banana','cherry','Date'])[1 + i %% 4] || '-' || md5(i::text),
			md5('u' || i)::uuid,
			'2024-03-31 00:00:00+00'::timestamptz + (i / 7) * interval '1.000001 second',
			'tenant-' || (i %% 13),
			(i * 7919 %% 100003) / 1000.0, '1990-01-01'::date + i, '2024-01-01'::timestamp + i * interval '61.5 seconds',
			'v-' || md5('v' || i),
			(i %% 101) / 100.0, (i %% 37) / 3.0, 0
			from generate_series(1, %d) i`, n),
		`update keyed set y = (a * 2 - b * 0.3)::real`,
		`create unique index on keyed (tk)`,
		`create unique index on keyed (uk)`,
		`create unique index on keyed (ts, i)`,
		`create unique index on keyed (tenant, i)`,
		`create unique index on keyed (i)`,
		`create unique index on keyed (nk)`,
		`create unique index on keyed (dk)`,
		`create unique index on keyed (tsk)`,
		`create unique index on keyed (vk)`,
		`analyze keyed`,
	} {
		if _, err := pool.Exec(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
}

// keyedSpec is a job on keyedTable keyed by key (a JSON string or list).
func keyedSpec(t *testing.T, key, where string) []byte {
	t.Helper()
	var m map[string]any
	body := demo.Job{
		Table: "keyed", Key: "i",
		Features:     []messages.FeatureSpec{{Column: "a", Scale: "standard"}, {Column: "b", Scale: "minmax"}},
		Label:        "y",
		Layers:       []demo.Layer{demo.Dense(8, "relu", "h"), demo.Dense(1, "", "out")},
		LearningRate: 0.01, Epochs: 2, BatchSize: 64, Seed: 5,
		RangeRows: 900, PageRows: 250, ValidationSplit: 0.2,
	}.JSON()
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	m["key"] = json.RawMessage(key)
	if where != "" {
		m["where"] = json.RawMessage(where)
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// keyedChecksum is the checksum of the key's hashes computed by SQL alone.
func keyedChecksum(t *testing.T, pool *pgxpool.Pool, cols []messages.KeyColumn, where string) messages.KeyChecksum {
	t.Helper()
	return keyedChecksumOf(t, pool, messages.KeyHashSQL(cols)+"::numeric", where)
}

// keyedChecksumOf is the checksum of the numeric expression h over keyed's rows.
func keyedChecksumOf(t *testing.T, pool *pgxpool.Pool, h, where string) messages.KeyChecksum {
	t.Helper()
	return checksumOf(t, pool, "keyed", h, where)
}

// checksumOf is the checksum of the numeric expression h over table's rows, where taking
// the parameters args.
func checksumOf(t *testing.T, pool *pgxpool.Pool, table, h, where string, args ...any) messages.KeyChecksum {
	t.Helper()
	var rows int64
	var sum, sumSq string
	err := pool.QueryRow(context.Background(), `select count(*),
		(sum(`+h+`) % 18446744073709551616 + 18446744073709551616) % 18446744073709551616,
		(sum(`+h+` * `+h+`) % 18446744073709551616)
		from `+pgx.Identifier{table}.Sanitize()+` `+where, args...).Scan(&rows, &sum, &sumSq)
	if err != nil {
		t.Fatal(err)
	}
	parse := func(s string) uint64 {
		v, ok := new(big.Int).SetString(s, 10)
		if !ok || !v.IsUint64() {
			t.Fatalf("checksum %q is not a uint64", s)
		}
		return v.Uint64()
	}
	return messages.KeyChecksum{Rows: rows, Sum: parse(sum), SumSq: parse(sumSq)}
}

// Every row reaches the trainer exactly once per epoch, and the weights are bit-identical
// with 1 and 3 fetchers, for a text key in an ICU collation, a uuid key, a timestamptz key
// with ties broken by a second column, and a composite (tenant, id) key. The trainer's
// checksum is of hashes computed in Go by the fetchers; the one compared is SQL's.
func TestTypedKeysEveryRowOnceSameWeights(t *testing.T) {
	pool, _ := testenv.Pool(t)
	natsURL := testenv.NATS(t)
	const rows = 6000
	keyedTable(t, pool, rows)
	text := func(name string) messages.KeyColumn { return messages.KeyColumn{Name: name, Type: "text"} }
	tests := []struct {
		name, key string
		cols      []messages.KeyColumn
		// where filters the job, sqlWhere the SQL checksum the same way.
		where, sqlWhere string
	}{
		{"integer", `"i"`, nil, "", ""},
		{"numeric", `"nk"`, []messages.KeyColumn{{Name: "nk", Type: "numeric(12,3)"}}, "", ""},
		{"date", `"dk"`, []messages.KeyColumn{{Name: "dk", Type: "date", Form: messages.KeyFormDate}}, "", ""},
		{"timestamp", `"tsk"`, []messages.KeyColumn{{Name: "tsk", Type: "timestamp without time zone", Form: messages.KeyFormTimestamp}}, "", ""},
		{"varchar", `"vk"`, []messages.KeyColumn{{Name: "vk", Type: "character varying(40)"}}, "", ""},
		{"text en-x-icu", `"tk"`, []messages.KeyColumn{text("tk")}, "", ""},
		{"uuid", `"uk"`, []messages.KeyColumn{{Name: "uk", Type: "uuid"}}, "", ""},
		{"timestamptz with ties, then integer", `["ts", "i"]`, []messages.KeyColumn{
			{Name: "ts", Type: "timestamp with time zone", Form: messages.KeyFormTimestamptz}, {Name: "i", Type: "integer"}}, "", ""},
		{"composite (tenant, i)", `["tenant", "i"]`, []messages.KeyColumn{text("tenant"), {Name: "i", Type: "integer"}}, "", ""},
		{"composite, filtered with hostile values", `["tenant", "i"]`, []messages.KeyColumn{text("tenant"), {Name: "i", Type: "integer"}},
			`[{"column": "tenant", "op": "in", "value": ["tenant-1", "tenant-2", "tenant-3'); drop table keyed; --"]},
			  {"column": "tk", "op": "!=", "value": "x'::int; select pg_sleep(10) --"},
			  {"column": "b", "op": ">=", "value": 2}, {"column": "a", "op": "not_null"}]`,
			`where tenant in ('tenant-1', 'tenant-2') and b >= 2 and a is not null`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var want messages.KeyChecksum
			if tt.cols == nil { // an integer key is checksummed as itself
				want = keyedChecksumOf(t, pool, "i::numeric", tt.sqlWhere)
			} else {
				want = keyedChecksum(t, pool, tt.cols, tt.sqlWhere)
			}
			one := runJob(t, pool, natsURL, 1, 1, 2<<20, keyedSpec(t, tt.key, tt.where))
			three := runJob(t, pool, natsURL, 3, 2, 2<<20, keyedSpec(t, tt.key, tt.where))
			for _, r := range []run{one, three} {
				for _, e := range r.status.Results {
					seen := e.Seen
					seen.Merge(e.SeenValid)
					if seen != want {
						t.Fatalf("epoch %d: the trainer saw %+v, SQL says %+v", e.Epoch, seen, want)
					}
				}
			}
			if len(one.weights) == 0 || !bytes.Equal(one.weights, three.weights) {
				t.Fatalf("weights differ between 1 and 3 fetchers (%d and %d bytes)", len(one.weights), len(three.weights))
			}
			logAccepted(t, "key", tt.name+" "+tt.key, want.Rows, 2, one.elapsed, three.elapsed)
		})
	}
}

// logAccepted logs one line of the table of accepted keys and column types, in a fixed
// format: what, the rows per epoch, the epochs, and the job's time with 1 fetcher (and with
// 3 when measured).
func logAccepted(t *testing.T, kind, name string, rows int64, epochs int, one, three time.Duration) {
	t.Helper()
	line := fmt.Sprintf("accepted | %-6s | %-56s | %6d rows | %d epochs | %6.2f s (1 fetcher)", kind, name, rows, epochs, one.Seconds())
	if three > 0 {
		line += fmt.Sprintf(" | %6.2f s (3 fetchers)", three.Seconds())
	}
	t.Log(line)
}
