package faults

import (
	"context"
	"fmt"
	"math/big"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/internal/demo"
	"pgtrain/internal/devenv"
	"pgtrain/internal/pgutil"
	"pgtrain/internal/testenv"
	"pgtrain/messages"
)

// Shared by every scenario: the binary under test, one PostgreSQL server (its own OS
// process, restartable on the same port) and the table the jobs read.
var (
	binary string
	pg     *devenv.Postgres
	pool   *pgxpool.Pool
	rows   = 200_000
)

const table = "fault_events"

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if v := os.Getenv("PGTRAIN_FAULTS_ROWS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 10_000 {
			fmt.Fprintf(os.Stderr, "PGTRAIN_FAULTS_ROWS=%q: want a number of at least 10000\n", v)
			return 2
		}
		rows = n
	}
	dir, err := os.MkdirTemp("", "pgtrain-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// The suite tests the binary as built from this tree, built once for all scenarios.
	if binary, err = testenv.BuildBinary(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()
	pg, err = devenv.StartPostgres(ctx, devenv.PostgresOptions{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "starting PostgreSQL: %v\n", err)
		return 1
	}
	defer pg.Stop()
	pool, err = pgutil.NewPool(ctx, pg.DSN, 4)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer pool.Close()
	start := time.Now()
	if err := createTable(ctx, table, rows); err != nil {
		fmt.Fprintf(os.Stderr, "creating %s: %v\n", table, err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "faults: %s with %d rows created in %.1fs\n", table, rows, time.Since(start).Seconds())
	code := m.Run()
	printSummary(os.Stderr)
	return code
}

// createTable makes a table of n rows with numeric, nullable and categorical features and
// a label that depends on them. Keys are sparse and skewed, so the ranges are not trivial.
// The rows are the same on every run: the generator is seeded.
func createTable(ctx context.Context, name string, n int) error {
	tbl := pgx.Identifier{name}.Sanitize()
	for _, s := range []string{
		"drop table if exists " + tbl,
		"create table " + tbl + ` (id bigint primary key, a real, b double precision, c integer, kind text, y real)`,
		"select setseed(0.25)",
		fmt.Sprintf(`insert into %s
			select case when i %% 4 = 0 then i * 1000 else i end,
			       random()::real, random()*10, case when i %% 17 = 0 then null else (i %% 50) end,
			       (array['red','green','blue','cyan'])[1 + i %% 4], 0
			from generate_series(1, %d) i`, tbl, n),
		"update " + tbl + ` set y = (a*2 - b*0.3 + coalesce(c, 25)*0.01 + case kind when 'red' then 1 else 0 end)::real`,
		"analyze " + tbl,
	} {
		if _, err := pool.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

// copyTable makes an identical copy of the table (same rows, same key index).
func copyTable(ctx context.Context, from, to string) error {
	src, dst := pgx.Identifier{from}.Sanitize(), pgx.Identifier{to}.Sanitize()
	for _, s := range []string{
		"drop table if exists " + dst,
		"create table " + dst + " (like " + src + " including all)",
		"insert into " + dst + " select * from " + src,
		"analyze " + dst,
	} {
		if _, err := pool.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

// jobSpec is the job every scenario runs: a multi-epoch MLP with dropout (whose masks must
// also be reproduced after a restart), small ranges and pages so that faults land
// mid-range and mid-epoch. consistency "" leaves the coordinator's default.
func jobSpec(tbl, consistency string) []byte {
	return sizedJobSpec(tbl, "id", consistency, 10000, 1000)
}

// sizedJobSpec is jobSpec with another key column and other range and page sizes.
func sizedJobSpec(tbl, key, consistency string, rangeRows, pageRows int) []byte {
	return demo.Job{
		Table: tbl, Key: key,
		Features: []messages.FeatureSpec{
			{Column: "a", Scale: "standard"},
			{Column: "b", Scale: "minmax"},
			{Column: "c", Impute: "median", Scale: "standard"},
			{Column: "kind", Encode: "onehot"},
		},
		Label: "y",
		Layers: []demo.Layer{demo.Dense(64, "relu", "h1"), demo.Dropout(0.1, "drop"),
			demo.Dense(32, "relu", "h2"), demo.Dense(1, "", "out")},
		LearningRate: 0.01, Epochs: epochs, BatchSize: 256, Seed: 5,
		RangeRows: rangeRows, PageRows: pageRows, ValidationSplit: 0.1, Consistency: consistency,
	}.JSON()
}

const epochs = 3

// typedChecksum is the key checksum of the rows of ranges [from, to] of a typed-key plan,
// by SQL alone: the sums of KeyHashSQL over the rows between the ranges' bounds.
func typedChecksum(ctx context.Context, tbl string, p *messages.Plan, from, to int) (messages.KeyChecksum, error) {
	var conds []string
	var args []any
	n := 1
	if after := p.Ranges[from].After; after != nil {
		var c string
		c, n = messages.KeysAfterSQL(p.KeyColumns, n)
		conds = append(conds, c)
		for _, k := range after {
			args = append(args, k)
		}
	}
	if through := p.Ranges[to].Through; through != nil {
		c, _ := messages.KeysThroughSQL(p.KeyColumns, n)
		conds = append(conds, c)
		for _, k := range through {
			args = append(args, k)
		}
	}
	where := ""
	if conds != nil {
		where = " where " + strings.Join(conds, " and ")
	}
	h := messages.KeyHashSQL(p.KeyColumns) + "::numeric"
	var rows int64
	var sum, sumSq string
	err := pool.QueryRow(ctx, `select count(*),
		coalesce((sum(`+h+`) % 18446744073709551616 + 18446744073709551616) % 18446744073709551616, 0),
		coalesce(sum(`+h+` * `+h+`) % 18446744073709551616, 0)
		from `+pgx.Identifier{tbl}.Sanitize()+where, args...).Scan(&rows, &sum, &sumSq)
	if err != nil {
		return messages.KeyChecksum{}, err
	}
	c := messages.KeyChecksum{Rows: rows}
	for _, v := range []struct {
		s   string
		dst *uint64
	}{{sum, &c.Sum}, {sumSq, &c.SumSq}} {
		b, ok := new(big.Int).SetString(v.s, 10)
		if !ok || !b.IsUint64() {
			return c, fmt.Errorf("checksum %q is not a uint64", v.s)
		}
		*v.dst = b.Uint64()
	}
	return c, nil
}

// sqlChecksum is the key checksum of the rows with lo <= id <= hi, by SQL alone.
func sqlChecksum(ctx context.Context, tbl string, lo, hi int64) (messages.KeyChecksum, error) {
	var n int64
	var sum, sumSq string
	err := pool.QueryRow(ctx, `select count(*),
		coalesce((sum(id::numeric) % 18446744073709551616 + 18446744073709551616) % 18446744073709551616, 0),
		coalesce(sum(id::numeric * id::numeric) % 18446744073709551616, 0)
		from `+pgx.Identifier{tbl}.Sanitize()+` where id between $1 and $2`, lo, hi).Scan(&n, &sum, &sumSq)
	if err != nil {
		return messages.KeyChecksum{}, err
	}
	parse := func(s string) (uint64, error) {
		v, ok := new(big.Int).SetString(s, 10)
		if !ok || !v.IsUint64() {
			return 0, fmt.Errorf("checksum %q is not a uint64", s)
		}
		return v.Uint64(), nil
	}
	c := messages.KeyChecksum{Rows: n}
	if c.Sum, err = parse(sum); err != nil {
		return c, err
	}
	c.SumSq, err = parse(sumSq)
	return c, err
}
