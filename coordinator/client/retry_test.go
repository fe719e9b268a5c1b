package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// The client retries only what a later try can mend, logs each attempt at debug and one
// summary line, and says what to check when the coordinator cannot be reached.
func TestRetryPolicy(t *testing.T) {
	tests := []struct {
		name      string
		statuses  []int // the answers, in order; the last repeats
		wantCalls int32
		wantErr   bool
	}{
		{name: "500 is not retried", statuses: []int{500}, wantCalls: 1, wantErr: true},
		{name: "400 is not retried", statuses: []int{400}, wantCalls: 1, wantErr: true},
		{name: "422 is not retried", statuses: []int{422}, wantCalls: 1, wantErr: true},
		{name: "503 then 200", statuses: []int{503, 503, 200}, wantCalls: 3},
		{name: "502 then 200", statuses: []int{502, 200}, wantCalls: 2},
		{name: "429 then 200", statuses: []int{429, 200}, wantCalls: 2},
		{name: "503 until the retries run out", statuses: []int{503}, wantCalls: 3, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				n := int(calls.Add(1))
				status := tt.statuses[min(n, len(tt.statuses))-1]
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(status)
				_, _ = w.Write([]byte(`{"version":1,"jobs":[]}`))
			}))
			defer srv.Close()
			var logs bytes.Buffer
			c := New(srv.URL, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
			c.http.RetryMax = 2
			_, err := c.Jobs(context.Background())
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if got := calls.Load(); got != tt.wantCalls {
				t.Fatalf("%d requests, want %d", got, tt.wantCalls)
			}
			summaries := strings.Count(logs.String(), `msg="coordinator request retried"`)
			if want := min(int(tt.wantCalls)-1, 1); summaries != want {
				t.Errorf("%d summary lines, want %d:\n%s", summaries, want, logs.String())
			}
			if strings.Contains(logs.String(), "level=ERROR") || strings.Contains(logs.String(), "level=WARN") {
				t.Errorf("attempts logged above debug:\n%s", logs.String())
			}
		})
	}
}

func TestUnreachableCoordinator(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	t.Run("with FailFast a first contact that is refused is reported at once", func(t *testing.T) {
		var logs bytes.Buffer
		c := New("http://"+addr, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})), FailFast())
		_, err := c.Jobs(context.Background())
		if err == nil || !strings.Contains(err.Error(), "nothing listens at http://"+addr+" (is the coordinator running, and is --coordinator right?)") {
			t.Fatalf("err = %v", err)
		}
		if strings.Contains(logs.String(), "retrying request") {
			t.Fatalf("retried:\n%s", logs.String())
		}
	})
	t.Run("without FailFast a first contact that is refused is retried (a worker)", func(t *testing.T) {
		var logs bytes.Buffer
		c := New("http://"+addr, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
		c.http.RetryMax = 2
		_, err := c.Jobs(context.Background())
		if err == nil || !strings.Contains(err.Error(), "nothing listens at http://"+addr+" in 3 attempts (is the coordinator running") {
			t.Fatalf("err = %v", err)
		}
		if n := strings.Count(logs.String(), "retrying request"); n != 2 {
			t.Errorf("%d debug retry lines, want 2:\n%s", n, logs.String())
		}
	})
	t.Run("after a first answer, a refused connection is retried (a restart)", func(t *testing.T) {
		var calls atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			calls.Add(1)
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"status":"ok"}`))
		}))
		var logs bytes.Buffer
		c := New(srv.URL, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})), FailFast())
		c.http.RetryMax = 2
		if err := c.Live(context.Background()); err != nil {
			t.Fatal(err)
		}
		srv.Close()
		_, err := c.Jobs(context.Background())
		if err == nil || !strings.Contains(err.Error(), "nothing listens at "+srv.URL+" in 3 attempts") {
			t.Fatalf("err = %v, want the attempts counted", err)
		}
		if n := strings.Count(logs.String(), "retrying request"); n != 2 {
			t.Errorf("%d debug retry lines, want 2:\n%s", n, logs.String())
		}
		if !strings.Contains(logs.String(), `level=INFO msg="coordinator request retried" method=GET path=/v1/jobs attempts=3`) {
			t.Errorf("no summary line:\n%s", logs.String())
		}
	})
}

func TestPermanent(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{&APIError{Status: 400}, true},
		{&APIError{Status: 422}, true},
		{&APIError{Status: 401}, true},
		{&APIError{Status: 429}, false},
		{&APIError{Status: 408}, false},
		{&APIError{Status: 503}, false},
		{&APIError{Status: 500}, false},
		{fmt.Errorf("x: %w", &net.DNSError{Name: "h", IsNotFound: true}), true},
		{fmt.Errorf("x: %w", &net.DNSError{Name: "h", IsTimeout: true}), false},
		{fmt.Errorf("x: %w", errBadURL), true},
		{errors.New("connection refused"), false},
	}
	for _, tt := range tests {
		if got := Permanent(tt.err); got != tt.want {
			t.Errorf("Permanent(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
