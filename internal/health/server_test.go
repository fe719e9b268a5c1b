package health

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
)

func get(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
	}
	return resp.StatusCode
}

func TestProbes(t *testing.T) {
	var down atomic.Bool
	type counters struct{ Pages int64 }
	s, err := Start("127.0.0.1:0", func(context.Context) error {
		if down.Load() {
			return errors.New("nats: not connected")
		}
		return nil
	}, func() any { return counters{Pages: 7} }, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	base := "http://" + s.Addr()

	tests := []struct {
		name       string
		path       string
		down       bool
		wantStatus int
		wantField  string
		wantValue  any
	}{
		{name: "alive", path: "/healthz", wantStatus: 200, wantField: "status", wantValue: "ok"},
		{name: "alive while a dependency is down", path: "/healthz", down: true, wantStatus: 200, wantField: "status", wantValue: "ok"},
		{name: "ready", path: "/readyz", wantStatus: 200, wantField: "status", wantValue: "ready"},
		{name: "not ready says why", path: "/readyz", down: true, wantStatus: 503, wantField: "error", wantValue: "nats: not connected"},
		{name: "stats", path: "/statsz", wantStatus: 200, wantField: "Pages", wantValue: float64(7)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			down.Store(tt.down)
			var body map[string]any
			if got := get(t, base+tt.path, &body); got != tt.wantStatus {
				t.Fatalf("GET %s = %d, want %d", tt.path, got, tt.wantStatus)
			}
			if body[tt.wantField] != tt.wantValue {
				t.Fatalf("GET %s: %s = %v, want %v", tt.path, tt.wantField, body[tt.wantField], tt.wantValue)
			}
		})
	}
}

func TestBusyAddressIsAnError(t *testing.T) {
	s, err := Start("127.0.0.1:0", nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	if _, err := Start(s.Addr(), nil, nil, nil); err == nil {
		t.Fatalf("a second listener on %s started", s.Addr())
	}
}
