package main

import (
	"io"
	"testing"

	"pgtrain/trainer"
)

func TestTrainerReadAheadFlagIsBounded(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int // 0: refused
	}{
		{args: nil, want: trainer.DefaultReadAhead},
		{args: []string{"--read-ahead", "1"}, want: 1},
		{args: []string{"--read-ahead", "64"}, want: trainer.MaxReadAhead},
		{args: []string{"--read-ahead", "0"}},
		{args: []string{"--read-ahead", "65"}},
		{args: []string{"--read-ahead", "four"}},
	} {
		fs, o := trainerFlags()
		fs.SetOutput(io.Discard)
		err := parseNoArgs(fs, tc.args)
		switch {
		case tc.want == 0 && err == nil:
			t.Errorf("%v: accepted (read-ahead %d), want an error", tc.args, o.cfg.ReadAhead)
		case tc.want != 0 && err != nil:
			t.Errorf("%v: %v", tc.args, err)
		case tc.want != 0 && o.cfg.ReadAhead != tc.want:
			t.Errorf("%v: read-ahead %d, want %d", tc.args, o.cfg.ReadAhead, tc.want)
		}
	}
}
