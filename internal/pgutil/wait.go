package pgutil

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/internal/workloop"
)

// permanentCodes are the SQLSTATEs of a connection the server refuses for good: a wrong
// password (28P01), a role that may not log in or does not exist (28000), a database that
// does not exist (3D000). Retrying them only delays the report.
var permanentCodes = map[string]bool{"28P01": true, "28000": true, "3D000": true}

// Permanent reports whether err, from connecting to PostgreSQL, is a fault that retrying
// cannot mend: the server refused the credentials or the database, the host name does not
// resolve, or the server's certificate is not trusted. A server that is down or restarting
// (connection refused, a timeout) is not permanent.
func Permanent(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return permanentCodes[pgErr.Code]
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return dnsErr.IsNotFound
	}
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
	)
	return errors.As(err, &unknownCA) || errors.As(err, &hostname) || errors.As(err, &invalid)
}

// WaitReady pings pool until its server answers, calling onRetry with the reason each time
// it tries again. A permanent fault (see Permanent) returns at once; when ctx ends it
// returns the last reason.
func WaitReady(ctx context.Context, pool *pgxpool.Pool, onRetry func(error)) error {
	backoff := workloop.Backoff{Min: 250 * time.Millisecond, Max: 2 * time.Second}
	for {
		// Each attempt gets its own bound, so a server that swallows packets is retried too.
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := pool.Ping(pctx)
		cancel()
		if err == nil || Permanent(err) {
			return err
		}
		if ctx.Err() != nil {
			return err
		}
		onRetry(err)
		if !backoff.Wait(ctx) {
			return err
		}
	}
}
