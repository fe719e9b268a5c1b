package pgutil

import (
	"net/url"
	"regexp"
	"strings"
)

// masked replaces every secret Redact hides.
const masked = "xxxxx"

// scheme matches the start of a URL ("postgres://", "nats://", "tls://").
var scheme = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.\-]*://`)

// secretKeys are the connection parameters whose values Redact hides.
var secretKeys = map[string]bool{"password": true, "sslpassword": true, "token": true}

// Redact returns a PostgreSQL DSN or a URL (postgres, nats, http; a comma-separated list
// of URLs too) with every password replaced by "xxxxx", in URL or key=value form. It never
// returns a secret it cannot place: what it cannot parse is masked whole after the scheme.
func Redact(s string) string {
	if scheme.MatchString(s) {
		parts := splitURLs(s)
		for i, p := range parts {
			parts[i] = redactURL(p)
		}
		return strings.Join(parts, ",")
	}
	return redactKeyValue(s)
}

// splitURLs splits a comma-separated list of URLs at each comma followed by a scheme.
func splitURLs(s string) []string {
	var parts []string
	start := 0
	for i := 1; i < len(s); i++ {
		if s[i-1] == ',' && scheme.MatchString(s[i:]) {
			parts = append(parts, s[start:i-1])
			start = i
		}
	}
	return append(parts, s[start:])
}

func redactURL(s string) string {
	prefix := scheme.FindString(s)
	if prefix == "" {
		return redactKeyValue(s)
	}
	rest := s[len(prefix):]
	whole := prefix + masked
	// The credentials end at the last '@': an unescaped password may hold '/', '?', '#'
	// or '@', which url.Parse would take for the end of the host.
	var user string
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		name, _, hasPassword := strings.Cut(rest[:at], ":")
		if strings.ContainsAny(name, "/?#") {
			// The '@' is past the host (a query value): where the credentials end is unknown.
			return whole
		}
		user = name
		if hasPassword {
			user += ":" + masked
		}
		user += "@"
		rest = rest[at+1:]
	}
	u, err := url.Parse(prefix + rest)
	if err != nil {
		return whole
	}
	if u.RawQuery != "" {
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil {
			return whole
		}
		hidden := false
		for k := range q {
			if secretKeys[strings.ToLower(k)] {
				q.Set(k, masked)
				hidden = true
			}
		}
		if hidden {
			u.RawQuery = q.Encode()
		}
	}
	return prefix + user + strings.TrimPrefix(u.String(), prefix)
}

// redactKeyValue masks the secret values of a libpq key=value string. Values follow libpq's
// rules: single-quoted with \' and \\ escapes, or unquoted up to white space with backslash
// escapes. A string that does not follow them is masked whole.
func redactKeyValue(s string) string {
	var b strings.Builder
	i := 0
	for {
		j := i
		for j < len(s) && isSpace(s[j]) {
			j++
		}
		b.WriteString(s[i:j])
		i = j
		if i == len(s) {
			return b.String()
		}
		eq := strings.IndexByte(s[i:], '=')
		if eq < 0 {
			return masked
		}
		key := strings.TrimSpace(s[i : i+eq])
		if key == "" || strings.ContainsFunc(key, func(r rune) bool { return r < 128 && isSpace(byte(r)) }) {
			return masked
		}
		j = i + eq + 1
		for j < len(s) && isSpace(s[j]) {
			j++
		}
		end, ok := valueEnd(s, j)
		if !ok {
			return masked
		}
		if secretKeys[strings.ToLower(key)] {
			b.WriteString(s[i:j])
			b.WriteString(masked)
		} else {
			b.WriteString(s[i:end])
		}
		i = end
	}
}

// valueEnd returns where the value starting at s[i] ends, and false for an unterminated
// quote or a trailing backslash.
func valueEnd(s string, i int) (int, bool) {
	if i < len(s) && s[i] == '\'' {
		for j := i + 1; j < len(s); j++ {
			switch s[j] {
			case '\\':
				j++
			case '\'':
				return j + 1, true
			}
		}
		return 0, false
	}
	j := i
	for j < len(s) && !isSpace(s[j]) {
		if s[j] == '\\' {
			j++
			if j == len(s) {
				return 0, false
			}
		}
		j++
	}
	return j, true
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}
