package pgutil

import (
	"context"
	"strings"
	"testing"
)

func TestNewPoolSaysWhyADSNIsMalformed(t *testing.T) {
	tests := []struct {
		name   string
		dsn    string
		want   string
		secret string
	}{
		{name: "bad escape in the password", dsn: "postgres://alice:se%zzkrit@127.0.0.1:5432/db", want: "failed to parse as URL (invalid percent-encoded token in password)", secret: "zzkrit"},
		{name: "space in the password", dsn: "postgres://alice:se krit@127.0.0.1:5432/db", want: "unexpected spaces found in password", secret: "krit"},
		{name: "slash in the password", dsn: "postgres://alice:pa/ss:w@127.0.0.1:5432/db", want: "invalid port", secret: "pa/ss"},
		{name: "bad port, keyword/value", dsn: "host=127.0.0.1 port=abc password=sekrit", want: "invalid port", secret: "sekrit"},
		{name: "bad sslmode", dsn: "postgres://alice:sekrit@127.0.0.1/db?sslmode=maybe", want: "sslmode is invalid", secret: "sekrit"},
		{name: "unterminated quote", dsn: "host=127.0.0.1 password='sekrit", want: "failed to parse as keyword/value", secret: "sekrit"},
		{name: "bad connect_timeout", dsn: "postgres://alice:sekrit@127.0.0.1/db?connect_timeout=soon", want: `invalid connect_timeout`, secret: "sekrit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewPool(context.Background(), tt.dsn, 1)
			if err == nil {
				t.Fatal("a malformed DSN was accepted")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %q, want it to say %q", err, tt.want)
			}
			if strings.Contains(err.Error(), tt.secret) {
				t.Errorf("err = %q shows %q", err, tt.secret)
			}
		})
	}
}
