package pgutil

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// NewPool opens a pool. QueryExecModeCacheDescribe gets binary results without named
// prepared statements, so it also works behind PgBouncer. maxConns 0 keeps pgx's default.
func NewPool(ctx context.Context, dsn string, maxConns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's parse errors can quote the DSN; say only what is wrong.
		return nil, fmt.Errorf("parsing the PostgreSQL connection string %s: invalid", Redact(dsn))
	}
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeCacheDescribe
	cfg.ConnConfig.ConnectTimeout = 10 * time.Second
	cfg.HealthCheckPeriod = 15 * time.Second
	cfg.PingTimeout = 5 * time.Second
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to PostgreSQL at %s: %w", Redact(dsn), err)
	}
	return pool, nil
}
