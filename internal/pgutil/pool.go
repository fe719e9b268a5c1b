package pgutil

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// NewPool opens a pool. QueryExecModeCacheDescribe gets binary results without named
// prepared statements, so it also works behind PgBouncer. maxConns 0 keeps pgx's default.
func NewPool(ctx context.Context, dsn string, maxConns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parsing the PostgreSQL connection string %s: %s", Redact(dsn), ParseReason(err))
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

// ParseReason says why pgx could not parse a connection string without quoting the string:
// pgx's message quotes it (its redaction is best effort), but the reason alone holds no
// password (pgx's URL parser names the part at fault, "password", instead of quoting it).
func ParseReason(err error) string {
	var pce *pgconn.ParseConfigError
	if !errors.As(err, &pce) {
		return "invalid"
	}
	// A copy without the string gives pgx's message alone: "cannot parse ``: msg (inner)".
	c := *pce
	c.ConnString = ""
	return strings.TrimPrefix(c.Error(), "cannot parse ``: ")
}
