package pgutil

import (
	"crypto/x509"
	"errors"
	"net"

	"github.com/jackc/pgx/v5/pgconn"
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
