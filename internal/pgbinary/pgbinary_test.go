package pgbinary

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"pgtrain/internal/testenv"
)

// The binary forms PostgreSQL sends decode to what SQL computes: extract(epoch ...)::float8
// for dates and timestamps (bit for bit, also past the year 2255 and for infinity),
// b::int for booleans, the elements of arrays.
func TestDecodersAgreeWithPostgreSQL(t *testing.T) {
	pool, _ := testenv.Pool(t)
	ctx := context.Background()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	values := []string{"1970-01-01", "2000-01-01", "1969-12-31 23:59:59.999999", "2024-02-29 13:45:01.123457",
		"0044-03-15 12:00:00 BC", "2300-06-01 00:00:00.000001", "294276-12-31 23:59:59.999999", "4713-01-01 00:00:00 BC",
		"infinity", "-infinity"}
	for _, v := range values {
		for _, typ := range []string{"timestamp", "timestamptz", "date"} {
			if typ == "date" && len(v) > 10 && v[0] != '-' && v != "infinity" && v != "-infinity" {
				continue
			}
			sql := "select $1::" + typ + ", extract(epoch from $1::" + typ + ")::float8"
			rows, err := execParams(conn.Conn().PgConn(), ctx, sql, [][]byte{[]byte(v)}, nil, nil, []int16{pgx.BinaryFormatCode, pgx.BinaryFormatCode})
			if err != nil {
				t.Fatalf("%s %s: %v", typ, v, err)
			}
			r := rows[0].Rows[0]
			want := math.Float64frombits(binary.BigEndian.Uint64(r[1]))
			var got float64
			if typ == "date" {
				got, err = DateSeconds(r[0])
			} else {
				got, err = TimestampSeconds(r[0])
			}
			if err != nil || math.Float64bits(got) != math.Float64bits(want) {
				t.Errorf("%s %q: decoded %v (%v), SQL says %v", typ, v, got, err, want)
			}
		}
	}
	for _, b := range []string{"true", "false"} {
		rows, err := execParams(conn.Conn().PgConn(), ctx, "select $1::bool, $1::bool::int", [][]byte{[]byte(b)}, nil, nil, []int16{pgx.BinaryFormatCode, pgx.TextFormatCode})
		if err != nil {
			t.Fatal(err)
		}
		got, err := Bool(rows[0].Rows[0][0])
		if err != nil || got != map[string]float32{"true": 1, "false": 0}[b] {
			t.Errorf("bool %s: %v (%v)", b, got, err)
		}
	}
	for _, tt := range []struct {
		sql  string
		oid  uint32
		want []float64 // NaN marks a NULL element
		n    int
	}{
		{"select '{1.5,-2,NULL,Infinity}'::float4[]", Float4OID, []float64{1.5, -2, math.NaN(), math.Inf(1)}, 4},
		{"select '{0.1,1e300}'::float8[]", Float8OID, []float64{0.1, 1e300}, 2},
		{"select '[0:1]={7,8}'::float8[]", Float8OID, []float64{7, 8}, 2}, // another lower bound: same elements
	} {
		rows, err := execParams(conn.Conn().PgConn(), ctx, tt.sql, nil, nil, nil, []int16{pgx.BinaryFormatCode})
		if err != nil {
			t.Fatal(err)
		}
		v := rows[0].Rows[0][0]
		var got []float64
		err = Array(v, tt.oid, tt.n, func(j int, e []byte) {
			if e == nil {
				got = append(got, math.NaN())
			} else {
				got = append(got, Float(e))
			}
		})
		if err != nil || len(got) != len(tt.want) {
			t.Fatalf("%s: %v %v", tt.sql, got, err)
		}
		for j := range got {
			if got[j] != tt.want[j] && !(math.IsNaN(got[j]) && math.IsNaN(tt.want[j])) {
				t.Errorf("%s: element %d is %v, want %v", tt.sql, j, got[j], tt.want[j])
			}
		}
		var le *LengthError
		if err := Array(v, tt.oid, tt.n+1, func(int, []byte) {}); !errors.As(err, &le) || le.Got != tt.n || le.Want != tt.n+1 {
			t.Errorf("%s with length %d: %v, want a LengthError", tt.sql, tt.n+1, err)
		}
	}
	// An empty array and a two-dimensional one.
	for _, tt := range []struct {
		sql     string
		wantLen bool
	}{{"select '{}'::float4[]", true}, {"select '{{1,2},{3,4}}'::float4[]", false}} {
		rows, err := execParams(conn.Conn().PgConn(), ctx, tt.sql, nil, nil, nil, []int16{pgx.BinaryFormatCode})
		if err != nil {
			t.Fatal(err)
		}
		err = Array(rows[0].Rows[0][0], Float4OID, 2, func(int, []byte) {})
		var le *LengthError
		if tt.wantLen != errors.As(err, &le) || (!tt.wantLen && !errors.Is(err, ErrFormat)) {
			t.Errorf("%s: %v", tt.sql, err)
		}
	}
}

// execParams runs sql and returns its rows' values in the given result formats.
func execParams(pc *pgconn.PgConn, ctx context.Context, sql string, args [][]byte, oids []uint32, argFormats, resultFormats []int16) ([]*pgconn.Result, error) {
	r := pc.ExecParams(ctx, sql, args, oids, argFormats, resultFormats).Read()
	return []*pgconn.Result{r}, r.Err
}

// FuzzArray: any bytes give an error or elements of the right size, never a panic nor more
// calls than the length asked for.
func FuzzArray(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 2, 188, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 4, 63, 128, 0, 0, 255, 255, 255, 255}, uint8(2), false)
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 189}, uint8(0), true)
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 2, 189, 127, 255, 255, 255, 0, 0, 0, 1}, uint8(3), true)
	f.Fuzz(func(t *testing.T, v []byte, n uint8, wide bool) {
		oid, size := uint32(Float4OID), 4
		if wide {
			oid, size = Float8OID, 8
		}
		calls := 0
		err := Array(v, oid, int(n), func(j int, e []byte) {
			if j != calls || j >= int(n) || (e != nil && len(e) != size) {
				t.Fatalf("element %d (call %d) of %d bytes", j, calls, len(e))
			}
			calls++
		})
		var le *LengthError
		if err == nil && calls != int(n) {
			t.Fatalf("no error after %d of %d elements", calls, n)
		}
		if err != nil && !errors.Is(err, ErrFormat) && !errors.As(err, &le) {
			t.Fatalf("error %v is neither ErrFormat nor a LengthError", err)
		}
	})
}

// FuzzScalars: dates, timestamps and booleans of any bytes decode or fail with ErrFormat.
func FuzzScalars(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{127, 255, 255, 255, 255, 255, 255, 255})
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, v []byte) {
		for _, dec := range []func([]byte) (float64, error){DateSeconds, TimestampSeconds} {
			if x, err := dec(v); err != nil && !errors.Is(err, ErrFormat) || err == nil && math.IsNaN(x) {
				t.Fatalf("%v: %v, %v", v, x, err)
			}
		}
		if x, err := Bool(v); err != nil && !errors.Is(err, ErrFormat) || err == nil && x != 0 && x != 1 {
			t.Fatalf("%v: %v, %v", v, x, err)
		}
	})
}
