package pgutil

import (
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	tests := []struct {
		name, dsn string
		secrets   []string // none may remain
		want      string   // the whole result, when it is worth pinning
	}{
		{name: "url password", dsn: "postgres://u:s3cret@h:5432/db?sslmode=disable", secrets: []string{"s3cret"},
			want: "postgres://u:xxxxx@h:5432/db?sslmode=disable"},
		{name: "query password", dsn: "postgres://u@h/db?password=s3cret", secrets: []string{"s3cret"}},
		{name: "key value", dsn: "host=h user=u password=s3cret dbname=db", secrets: []string{"s3cret"},
			want: "host=h user=u password=xxxxx dbname=db"},
		{name: "quoted key value", dsn: "host=h password='s3 cret' dbname=db", secrets: []string{"s3 cret", "cret"}},
		// Unescaped characters that end the userinfo for url.Parse, or make it fail.
		{name: "url password with %", dsn: "postgres://alice:p%zz@h/db", secrets: []string{"p%zz", "%zz"}},
		{name: "url password with /", dsn: "postgres://alice:12/34@h/db", secrets: []string{"12/34", "34"},
			want: "postgres://alice:xxxxx@h/db"},
		{name: "url password with #", dsn: "postgres://alice:pa#ss@h:5432/db", secrets: []string{"pa#ss", "#ss"}},
		{name: "url password with ?", dsn: "postgres://alice:pa?ss@h/db", secrets: []string{"pa?ss", "?ss"}},
		{name: "url password with @", dsn: "postgres://alice:p@ss@h/db", secrets: []string{"p@ss"},
			want: "postgres://alice:xxxxx@h/db"},
		{name: "url password with all of them", dsn: "postgres://alice:a%/#?@b@h/db?sslmode=disable", secrets: []string{"a%/#?@b", "#?@b"}},
		{name: "nats url", dsn: "nats://alice:s3cret@127.0.0.1:4222", secrets: []string{"s3cret"},
			want: "nats://alice:xxxxx@127.0.0.1:4222"},
		{name: "nats url list", dsn: "nats://alice:one@h1:4222,nats://bob:two@h2:4222", secrets: []string{"one", "two"},
			want: "nats://alice:xxxxx@h1:4222,nats://bob:xxxxx@h2:4222"},
		{name: "query with a bad escape", dsn: "postgres://h/db?password=s3%zzcret", secrets: []string{"s3"}},
		{name: "query value with @", dsn: "postgres://h/db?password=s3@cret", secrets: []string{"s3"}},
		{name: "key value escaped quote", dsn: `host=h password='it\'s secret' dbname=db`, secrets: []string{"it", "s secret", "secret"},
			want: `host=h password=xxxxx dbname=db`},
		{name: "key value escaped backslash", dsn: `password='a\\' user=u`, secrets: []string{`a\\`},
			want: `password=xxxxx user=u`},
		{name: "key value unquoted escape", dsn: `password=a\ b user=u`, secrets: []string{`a\ b`, `\ b`},
			want: `password=xxxxx user=u`},
		{name: "key value spaces around =", dsn: "host = h password = s3cret", secrets: []string{"s3cret"}},
		{name: "key value unterminated quote", dsn: "host=h password='s3cret", secrets: []string{"s3cret"}},
		{name: "key value upper case key", dsn: "host=h PASSWORD=s3cret", secrets: []string{"s3cret"}},
		{name: "not a connection string", dsn: "s3cret", secrets: []string{"s3cret"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Redact(tt.dsn)
			if !strings.Contains(got, "xxxxx") {
				t.Fatalf("Redact(%q) = %q: nothing masked", tt.dsn, got)
			}
			for _, s := range tt.secrets {
				if strings.Contains(got, s) {
					t.Fatalf("Redact(%q) = %q: %q remains", tt.dsn, got, s)
				}
			}
			if tt.want != "" && got != tt.want {
				t.Fatalf("Redact(%q) = %q, want %q", tt.dsn, got, tt.want)
			}
		})
	}
	for _, plain := range []string{"postgres://u@h/db", "postgres://h:5432/db?sslmode=disable", "host=h user=u dbname=db", "nats://127.0.0.1:4222", ""} {
		if got := Redact(plain); got != plain {
			t.Fatalf("a string without a password changed: Redact(%q) = %q", plain, got)
		}
	}
}
