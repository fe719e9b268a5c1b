package coordinator

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// snapshot is an exported snapshot kept alive by its open transaction on a pooled
// connection. Fetchers join it with SET TRANSACTION SNAPSHOT while it is open.
type snapshot struct {
	id     string
	source string
	conn   *pgxpool.Conn
	tx     pgx.Tx
	expiry *time.Timer // ends the job at --snapshot-max-age; nil until the job exists
}

// close ends the transaction (commit: it only read) and gives the connection back; the pool
// drops a connection whose transaction did not end cleanly.
func (s *snapshot) close(ctx context.Context) error {
	if s.expiry != nil {
		s.expiry.Stop()
	}
	err := s.tx.Commit(ctx)
	s.conn.Release()
	return err
}
