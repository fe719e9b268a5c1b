// Package demo makes the demo table that `pgtrain up --demo` trains on, its job spec, and
// the job spec builder the end-to-end and fault tests share with it.
//
// The label is a known function of the features, so a user can see the model learn it:
//
//	y = 2·x1 − 3·x2 + x1·x3 + 1.5·sin(3·x4) + city_effect + 0.02·(age − 50) + noise
//
// with x1..x4 uniform on [−1, 1], age an integer in [18, 80] (5% NULL, imputed with the
// mean; a NULL age counts as 49 in the formula), city one of oslo (+1), lima (−1), pune (+0.5), kyiv (−0.5), nome (+2) or NULL
// (2%, effect 0), and noise uniform on [−0.1, 0.1]. Predicting the mean scores a mean squared
// error equal to the variance of y (about 6.8); a model that learns the formula gets close to
// the noise's variance (0.0033).
package demo

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/messages"
)

// Table is the demo table's name.
const Table = "pgtrain_demo"

// CreateTable (re)creates the demo table with the given number of rows. The rows are the
// same every time for the same count: the generator is seeded.
func CreateTable(ctx context.Context, pool *pgxpool.Pool, rows int) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	tbl := pgx.Identifier{Table}.Sanitize()
	stmts := []string{
		"drop table if exists " + tbl,
		`create table ` + tbl + ` (
			id   bigint primary key,
			x1   real not null,
			x2   real not null,
			x3   real not null,
			x4   double precision not null,
			age  integer,
			city text,
			y    real not null)`,
		"select setseed(0.42)",
	}
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("creating the demo table: %w", err)
		}
	}
	insert := `insert into ` + tbl + ` (id, x1, x2, x3, x4, age, city, y)
		select id, x1, x2, x3, x4, age, city,
		       2*x1 - 3*x2 + x1*x3 + 1.5*sin(3*x4)
		       + case city when 'oslo' then 1 when 'lima' then -1 when 'pune' then 0.5
		                   when 'kyiv' then -0.5 when 'nome' then 2 else 0 end
		       + 0.02*(coalesce(age, 49) - 50) + noise
		from (select i as id,
		             (random()*2 - 1)::real as x1, (random()*2 - 1)::real as x2,
		             (random()*2 - 1)::real as x3, random()*2 - 1 as x4,
		             case when random() < 0.05 then null else 18 + floor(random()*63)::int end as age,
		             (array['oslo','lima','pune','kyiv','nome'])[1 + floor(random()*5)::int] as c,
		             random() as cnull,
		             (random()*0.2 - 0.1) as noise
		      from generate_series(1, $1::bigint) as i) g,
		     lateral (select case when cnull < 0.02 then null else c end as city) cc`
	if _, err := conn.Exec(ctx, insert, rows); err != nil {
		return fmt.Errorf("filling the demo table: %w", err)
	}
	if _, err := conn.Exec(ctx, "analyze "+tbl); err != nil {
		return fmt.Errorf("analyzing the demo table: %w", err)
	}
	return nil
}

// MeanLoss is the mean squared error of predicting the mean label: the variance of y.
func MeanLoss(ctx context.Context, pool *pgxpool.Pool) (float64, error) {
	var v float64
	err := pool.QueryRow(ctx, "select var_pop(y) from "+pgx.Identifier{Table}.Sanitize()).Scan(&v)
	return v, err
}

// Spec is the demo job: an MLP regressor on the standardised features.
func Spec(epochs int) []byte {
	return Job{
		Table: Table, Key: "id",
		Features: []messages.FeatureSpec{
			{Column: "x1", Scale: "standard"},
			{Column: "x2", Scale: "standard"},
			{Column: "x3", Scale: "standard"},
			{Column: "x4", Scale: "standard"},
			{Column: "age", Impute: "mean", Scale: "minmax"},
			{Column: "city", Encode: "onehot"},
		},
		Label:        "y",
		Layers:       []Layer{Dense(64, "relu", "hidden1"), Dense(32, "relu", "hidden2"), Dense(1, "", "output")},
		LearningRate: 0.002, Metrics: []string{"mae"},
		Epochs: epochs, BatchSize: 256, ValidationSplit: 0.1, Seed: 42,
	}.JSON()
}
