package fetcher

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/internal/testenv"
	"pgtrain/messages"
)

// Booleans, dates, timestamps and arrays are read in their binary form and travel as
// numbers: 0/1 as float32, seconds since the epoch as float64, an array as a raw column per
// element. A row whose array has another length than the plan's is a permanent error
// naming its key; over a simple-protocol (text) connection, booleans are read and dates
// and arrays are a clear permanent error.
func TestRangeReaderColumnTypes(t *testing.T) {
	pool, dsn := testenv.Pool(t)
	ctx := context.Background()
	_, err := pool.Exec(ctx, `
		CREATE DOMAIN day AS date;
		CREATE TABLE typed (id int8 PRIMARY KEY, b bool, d day, ts timestamp(3), tz timestamptz, e real[], v float8[], y float8);
		INSERT INTO typed VALUES
			(1, true, '2024-03-01', '2024-03-01 06:00:00.5', '2024-03-01 07:00:00+01', '{1.5,NULL}', '{0.1,2}', 1),
			(2, false, 'infinity', '1969-12-31 23:59:59', '-infinity', NULL, '{NaN,-Infinity}', 2),
			(3, NULL, NULL, NULL, NULL, '{3,4}', NULL, 3);`)
	if err != nil {
		t.Fatal(err)
	}
	plan := &messages.Plan{JobID: "job-1", Table: "typed", Key: "id", PageRows: 10, InputDim: 8, LabelDim: 1,
		Features: []messages.ColumnPlan{
			{Name: "b", Kind: messages.KindNumeric, PGType: "boolean", Type: messages.TypeBoolean},
			{Name: "d", Kind: messages.KindNumeric, PGType: "day", Type: messages.TypeDate},
			{Name: "ts", Kind: messages.KindNumeric, PGType: "timestamp(3) without time zone", Type: messages.TypeTimestamp},
			{Name: "tz", Kind: messages.KindNumeric, PGType: "timestamp with time zone", Type: messages.TypeTimestampTZ},
			{Name: "e", Kind: messages.KindNumeric, PGType: "real[]", Type: messages.TypeFloat4Array, Elements: make([]messages.ElementPlan, 2)},
			{Name: "v", Kind: messages.KindNumeric, PGType: "double precision[]", Type: messages.TypeFloat8Array, Elements: make([]messages.ElementPlan, 2)},
		},
		Label: messages.ColumnPlan{Name: "y", Kind: messages.KindNumeric, PGType: "double precision"}}
	r, err := NewRangeReader(pool, plan, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	all := messages.KeyRange{Lo: math.MinInt64, Hi: math.MaxInt64}
	pages := readAll(t, r, all)
	b, err := messages.DecodeRaw(pages[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	day := float64(time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC).Unix())
	nan, inf := math.NaN(), math.Inf(1)
	null := math.Float64frombits(0x7ff8dead) // marks a NULL below
	want := map[string][]float64{
		"b":    {1, 0, null},
		"d":    {day, inf, null},
		"ts":   {day + 6*3600 + 0.5, -1, null},
		"tz":   {day + 6*3600, -inf, null},
		"e[1]": {1.5, null, 3},
		"e[2]": {null, null, 4},
		"v[1]": {0.1, nan, null},
		"v[2]": {2, -inf, null},
		"y":    {1, 2, 3},
	}
	kinds := map[string]uint8{"b": messages.ColumnFloat32, "e[1]": messages.ColumnFloat32, "e[2]": messages.ColumnFloat32}
	if len(b.Columns) != len(want) {
		t.Fatalf("%d raw columns, want %d", len(b.Columns), len(want))
	}
	for _, c := range b.Columns {
		w, ok := want[c.Name]
		if !ok || c.Kind != max(kinds[c.Name], messages.ColumnFloat64) && c.Kind != kinds[c.Name] {
			t.Fatalf("raw column %q of kind %d", c.Name, c.Kind)
		}
		for i, x := range w {
			got := 0.0
			if c.Kind == messages.ColumnFloat32 {
				got = float64(c.Float32[i])
			} else {
				got = c.Float64[i]
			}
			isNull := math.Float64bits(x) == math.Float64bits(null)
			if c.IsNull(i) != isNull || !isNull && got != x && !(math.IsNaN(got) && math.IsNaN(x)) {
				t.Errorf("key %d %s: %v (NULL %v), want %v", b.Keys[i], c.Name, got, c.IsNull(i), x)
			}
		}
	}

	// A row of another length, after planning.
	if _, err := pool.Exec(ctx, `UPDATE typed SET e = '{1,2,3}' WHERE id = 3`); err != nil {
		t.Fatal(err)
	}
	_, err = r.ReadPage(ctx, 0, all, 0, 0, nil)
	if !errors.Is(err, ErrBadValue) || !Permanent(err) || !strings.Contains(err.Error(), `row key 3: column "e": an array of 3 elements, want 2`) {
		t.Fatalf("err = %v, want a permanent ErrBadValue naming key 3", err)
	}

	// Text results: a boolean reads, a date is refused clearly.
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	textPool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer textPool.Close()
	boolOnly := *plan
	boolOnly.Features = plan.Features[:1]
	tr, err := NewRangeReader(textPool, &boolOnly, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	pg, err := tr.ReadPage(ctx, 0, all, 0, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c := pg.Batch.Columns[0]; c.Float32[0] != 1 || c.Float32[1] != 0 || !c.IsNull(2) {
		t.Fatalf("booleans as text: %+v", c)
	}
	dates := *plan
	dates.Features = plan.Features[1:2]
	tr, err = NewRangeReader(textPool, &dates, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.ReadPage(ctx, 0, all, 0, 0, nil); !Permanent(err) || !strings.Contains(err.Error(), "reads dates and timestamps in binary only") {
		t.Fatalf("dates as text: %v", err)
	}
}
