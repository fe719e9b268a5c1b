package pgutil

import (
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	tests := []struct {
		name, dsn, secret string
	}{
		{"url password", "postgres://u:s3cret@h:5432/db?sslmode=disable", "s3cret"},
		{"query password", "postgres://u@h/db?password=s3cret", "s3cret"},
		{"key value", "host=h user=u password=s3cret dbname=db", "s3cret"},
		{"quoted key value", "host=h password='s3 cret' dbname=db", "s3 cret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Redact(tt.dsn)
			if strings.Contains(got, tt.secret) || !strings.Contains(got, "xxxxx") {
				t.Fatalf("Redact(%q) = %q", tt.dsn, got)
			}
		})
	}
	if got := Redact("postgres://u@h/db"); got != "postgres://u@h/db" {
		t.Fatalf("a DSN without a password changed: %q", got)
	}
}
