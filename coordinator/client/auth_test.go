package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// A 401 or 403 is final: retrying cannot make a wrong token right, and a retry loop would
// hammer the coordinator for 15 s. A 503 is retried, as before.
func TestAuthErrorsAreNotRetried(t *testing.T) {
	for _, status := range []int{http.StatusUnauthorized, http.StatusForbidden, http.StatusServiceUnavailable} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			var calls atomic.Int32
			var gotAuth atomic.Value
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				gotAuth.Store(r.Header.Get("Authorization"))
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(status)
				_, _ = w.Write([]byte(`{"error":"no"}`))
			}))
			defer srv.Close()
			c := New(srv.URL, nil, WithToken("secret-0123456789abcdef"))
			c.http.RetryMax = 2 // keep the 503 case short
			_, err := c.Jobs(context.Background())
			var ae *APIError
			if !errors.As(err, &ae) || ae.Status != status {
				t.Fatalf("err = %v, want an APIError %d", err, status)
			}
			want := int32(1)
			if status == http.StatusServiceUnavailable {
				want = 3
			}
			if n := calls.Load(); n != want {
				t.Fatalf("%d requests, want %d", n, want)
			}
			if got := gotAuth.Load(); got != "Bearer secret-0123456789abcdef" {
				t.Fatalf("Authorization: %q", got)
			}
		})
	}
}
