package pgutil

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestPermanent(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{name: "wrong password", err: fmt.Errorf("connecting: %w", &pgconn.PgError{Code: "28P01"}), want: true},
		{name: "role may not log in", err: &pgconn.PgError{Code: "28000"}, want: true},
		{name: "no such database", err: &pgconn.PgError{Code: "3D000"}, want: true},
		{name: "too many connections", err: &pgconn.PgError{Code: "53300"}, want: false},
		{name: "shutting down", err: &pgconn.PgError{Code: "57P01"}, want: false},
		{name: "unknown host", err: fmt.Errorf("hostname resolving error: %w", &net.DNSError{Name: "h", IsNotFound: true}), want: true},
		{name: "DNS timeout", err: &net.DNSError{Name: "h", IsTimeout: true}, want: false},
		{name: "untrusted certificate", err: fmt.Errorf("tls: %w", x509.UnknownAuthorityError{}), want: true},
		{name: "connection refused", err: &net.OpError{Op: "dial", Err: errors.New("connect: connection refused")}, want: false},
		{name: "timeout", err: context.DeadlineExceeded, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Permanent(tt.err); got != tt.want {
				t.Errorf("Permanent(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}
