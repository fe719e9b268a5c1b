package main

import "testing"

func TestValidMemoryLimit(t *testing.T) {
	for _, tt := range []struct {
		name    string
		limit   int64
		wantErr bool
	}{
		{name: "none", limit: 0},
		{name: "the default", limit: defaultNATSMemoryLimit},
		{name: "the least", limit: minNATSMemoryLimit},
		{name: "below the least", limit: minNATSMemoryLimit - 1, wantErr: true},
		{name: "negative", limit: -1, wantErr: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := validMemoryLimit(tt.limit); (err != nil) != tt.wantErr {
				t.Fatalf("validMemoryLimit(%d) = %v, want error %v", tt.limit, err, tt.wantErr)
			}
		})
	}
}

// The flag reads its PGTRAIN_ variable like every other.
func TestNATSMemoryLimitFromEnv(t *testing.T) {
	t.Setenv("PGTRAIN_MEMORY_LIMIT", "134217728")
	fs, o := natsServerFlags()
	if err := parse(fs, nil); err != nil {
		t.Fatal(err)
	}
	if o.memLimit != 128<<20 {
		t.Fatalf("memory limit %d, want %d", o.memLimit, 128<<20)
	}
}
