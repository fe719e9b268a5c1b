package coordinator

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
)

// snapshot is an exported snapshot kept alive by its open transaction on a dedicated
// connection. Fetchers join it with SET TRANSACTION SNAPSHOT while it is open.
type snapshot struct {
	id   string
	conn *pgx.Conn
	tx   pgx.Tx
}

// close ends the transaction (commit: it only read) and the connection.
func (s *snapshot) close(ctx context.Context) error {
	err := s.tx.Commit(ctx)
	return errors.Join(err, s.conn.Close(ctx))
}
