package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"pgtrain/internal/demo"
	"pgtrain/internal/pgutil"
)

type demoDataOpts struct {
	dsn  string
	rows int
}

func demoDataFlags() (*flag.FlagSet, *demoDataOpts) {
	o := &demoDataOpts{}
	fs := newFlagSet("demo-data", "demo-data [flags]")
	fs.StringVar(&o.dsn, "dsn", "", "PostgreSQL connection string")
	fs.IntVar(&o.rows, "rows", 1_000_000, "rows in the demo table")
	return fs, o
}

func runDemoData(ctx context.Context, args []string) error {
	fs, o := demoDataFlags()
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if o.dsn == "" {
		return usagef("--dsn (or $PGTRAIN_DSN) is required")
	}
	pool, err := pgutil.NewPool(ctx, o.dsn, 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	start := time.Now()
	if err := demo.CreateTable(ctx, pool, o.rows); err != nil {
		return err
	}
	fmt.Printf("created %s with %d rows in %.1fs\n", demo.Table, o.rows, time.Since(start).Seconds())
	return nil
}
