package main

import (
	"io"
	"testing"
)

// cancel and delete take exactly one job id, with the usual client flags.
func TestJobControlArgs(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantID  string
		wantErr bool
	}{
		{name: "one job", args: []string{"iris-0a1b2c3d"}, wantID: "iris-0a1b2c3d"},
		{name: "flags first", args: []string{"--coordinator", "http://127.0.0.1:1", "iris-1"}, wantID: "iris-1"},
		{name: "no job", args: nil, wantErr: true},
		{name: "two jobs", args: []string{"a", "b"}, wantErr: true},
		{name: "bad log level", args: []string{"--log-level", "loud", "a"}, wantErr: true},
	}
	for _, cmd := range []string{"cancel", "delete"} {
		for _, tt := range tests {
			t.Run(cmd+"/"+tt.name, func(t *testing.T) {
				fs, o := jobControlFlags(cmd)
				fs.SetOutput(io.Discard)
				_, id, err := jobControlClient(fs, o, tt.args)
				if (err != nil) != tt.wantErr || id != tt.wantID {
					t.Fatalf("id %q, err %v; want %q, error %v", id, err, tt.wantID, tt.wantErr)
				}
			})
		}
	}
}
