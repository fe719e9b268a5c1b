package security

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"pgtrain/internal/demo"
	"pgtrain/internal/devenv"
	"pgtrain/internal/pgutil"
	"pgtrain/internal/testenv"
)

// Shared by every test: the binary under test, PostgreSQL (with the demo table) and NATS.
var (
	binary string
	pg     *devenv.Postgres
	natsS  *devenv.NATS
)

// tableRows is the size of the table the normal job reads: small, the point is that it ends.
const tableRows = 5000

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "pgtrain-security-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if binary, err = testenv.BuildBinary(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()
	if pg, err = devenv.StartPostgres(ctx, devenv.PostgresOptions{}); err != nil {
		fmt.Fprintf(os.Stderr, "starting PostgreSQL: %v\n", err)
		return 1
	}
	defer pg.Stop()
	if natsS, err = devenv.StartNATS(devenv.NATSOptions{StoreDir: filepath.Join(dir, "nats")}); err != nil {
		fmt.Fprintf(os.Stderr, "starting NATS: %v\n", err)
		return 1
	}
	defer natsS.Stop()
	pool, err := pgutil.NewPool(ctx, pg.DSN, 2)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	err = demo.CreateTable(ctx, pool, tableRows)
	pool.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}
