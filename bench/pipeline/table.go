package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// numFeatures is the count of real feature columns f01..f16.
const numFeatures = 16

// categories are the values of the text column; a few are much more common than others, as
// in real data, so the one-hot columns are not uniform.
var categories = []string{"alpha", "bravo", "charlie", "delta", "echo", "foxtrot",
	"golf", "hotel", "india", "juliet", "kilo", "lima"}

// featureNames are the real feature columns.
func featureNames() []string {
	names := make([]string, numFeatures)
	for i := range names {
		names[i] = fmt.Sprintf("f%02d", i+1)
	}
	return names
}

// columns are the columns every reader needs, in the order they are read: the key, the
// features, the category and the label.
func columns() []string {
	return append(append([]string{"id"}, featureNames()...), "cat", "y")
}

// columnList is columns() quoted and joined for SQL.
func columnList() string {
	cols := columns()
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = pgx.Identifier{c}.Sanitize()
	}
	return strings.Join(q, ", ")
}

func tableName(rows int) string { return fmt.Sprintf("bench_%d", rows) }

// createTable (re)creates the table of n rows. The generator is seeded, so a table of a
// given size is the same in every run. It is vacuumed at once, as a table that has been in
// use would be: otherwise the autovacuum of the fresh rows (and the hint bits the first
// reads set) would land in whichever measurement runs first, the ceiling's.
func createTable(ctx context.Context, pool *pgxpool.Pool, name string, n int) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	tbl := pgx.Identifier{name}.Sanitize()
	var defs, gens []string
	for _, f := range featureNames() {
		defs = append(defs, f+" real not null")
		gens = append(gens, fmt.Sprintf("(random()*2 - 1)::real as %s", f))
	}
	cats := make([]string, len(categories))
	for i, c := range categories {
		cats[i] = "'" + c + "'"
	}
	stmts := []string{
		"drop table if exists " + tbl,
		fmt.Sprintf("create table %s (id bigint primary key, %s, cat text not null, y real not null)", tbl, strings.Join(defs, ", ")),
		"select setseed(0.17)",
		// power(random(), 2) makes the first categories the common ones.
		fmt.Sprintf(`insert into %s
			select i, %s, cat,
			       (2*f01 - f02 + 0.5*f03*f04 + sin(3*f05) + 0.1*length(cat) + (random()*0.2 - 0.1))::real
			from (select i, %s, (array[%s])[1 + floor(power(random(), 2) * %d)::int] as cat
			      from generate_series(1, $1::bigint) as i) g`,
			tbl, strings.Join(featureNames(), ", "), strings.Join(gens, ", "), strings.Join(cats, ","), len(categories)),
		"vacuum (analyze) " + tbl,
	}
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s, argsFor(s, n)...); err != nil {
			return fmt.Errorf("creating %s: %w", name, err)
		}
	}
	return nil
}

func argsFor(stmt string, n int) []any {
	if strings.Contains(stmt, "$1") {
		return []any{n}
	}
	return nil
}

func dropTable(ctx context.Context, pool *pgxpool.Pool, name string) error {
	_, err := pool.Exec(ctx, "drop table if exists "+pgx.Identifier{name}.Sanitize())
	return err
}
