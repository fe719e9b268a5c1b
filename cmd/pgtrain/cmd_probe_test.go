package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"pgtrain/internal/health"
)

// The probe runs against a role's real probe listener: ready, not ready, and nothing there.
func TestProbeExitsByTheAnswer(t *testing.T) {
	var notReady atomic.Bool
	ready := func(context.Context) error {
		if notReady.Load() {
			return errors.New("nats: not connected")
		}
		return nil
	}
	s, err := health.Start("127.0.0.1:0", ready, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	// A port that was just free and is closed again: the probe's connection is refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	base := "http://" + s.Addr()
	tests := []struct {
		name     string
		notReady bool
		args     []string
		wantCode int // 0: no error
		wantMsg  string
	}{
		{"healthz", false, []string{base + "/healthz"}, 0, ""},
		{"ready", false, []string{base + "/readyz"}, 0, ""},
		{"not ready", true, []string{base + "/readyz"}, 1, "503"},
		{"no such path", false, []string{base + "/nothing"}, 1, "404"},
		{"nothing listens", false, []string{"--timeout", "2s", "http://" + closed + "/healthz"}, 1, "refused"},
		{"no URL", false, nil, 2, "one URL"},
		{"two URLs", false, []string{base + "/healthz", base + "/readyz"}, 2, "one URL"},
		{"not http", false, []string{"ftp://" + s.Addr() + "/healthz"}, 2, "want http"},
		{"bad timeout", false, []string{"--timeout", "0s", base + "/healthz"}, 2, "--timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			notReady.Store(tt.notReady)
			err := runProbe(context.Background(), tt.args)
			if tt.wantCode == 0 {
				if err != nil {
					t.Fatalf("probe %v: %v", tt.args, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("probe %v succeeded, want exit %d", tt.args, tt.wantCode)
			}
			if got := exitCode(err); got != tt.wantCode {
				t.Errorf("probe %v: exit %d (%v), want %d", tt.args, got, err, tt.wantCode)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("probe %v: %v, want it to say %q", tt.args, err, tt.wantMsg)
			}
		})
	}
}
