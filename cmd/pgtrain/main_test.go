package main

import (
	"errors"
	"fmt"
	"testing"
)

func TestExitCode(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{name: "exit error", err: exitError{code: 3, msg: "job failed"}, want: 3},
		{name: "wrapped exit error", err: fmt.Errorf("submitting: %w", exitError{code: 4, msg: "job failed"}), want: 4},
		{name: "joined exit error", err: errors.Join(errors.New("first"), exitError{code: 5}), want: 5},
		{name: "other error", err: errors.New("connection refused"), want: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := exitCode(tt.err); got != tt.want {
				t.Errorf("exitCode(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}
