package trainer

import (
	"errors"
	"os"
	"runtime"
	"testing"
)

// A corrupt checkpoint file whose few bytes claim millions of pending keys is refused before
// msgpack sizes a slice from the claim.
func TestLoadCheckpointRefusesLengthsPastTheFile(t *testing.T) {
	dir := t.TempDir()
	b := []byte{0x81, 0xa8}
	b = append(b, "position"...)
	b = append(b, 0x81, 0xa7)
	b = append(b, "pending"...)
	b = append(b, 0x81, 0xa4)
	b = append(b, "keys"...)
	b = append(b, 0xdd, 0x00, 0x40, 0x00, 0x00) // 2^22 keys, none of them there
	if err := os.WriteFile(checkpointPath(dir), b, 0o644); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := loadCheckpoint(dir, "j")
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrBadCheckpoint) {
		t.Fatalf("err = %v, want ErrBadCheckpoint", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Fatalf("reading a %d-byte checkpoint allocated %d bytes", len(b), grew)
	}
}
