package bus

import (
	"fmt"
	"math"
)

// ServerMemoryHeadroom is what a NATS server holding these streams needs beside READY's
// blocks: RAW's pages in flight and the server's own state.
const ServerMemoryHeadroom = 256 << 20

// ServerMemoryLimit is the Go heap limit an embedded NATS server needs to serve READY
// without its collector running non-stop: READY's byte limit plus ServerMemoryHeadroom.
//
// The file store keeps each block it wrote or read in the last ten seconds, and drops it
// when the collector runs. A replay reads READY (a table replays when it fits in half of
// it) block by block: under a heap limit below what a replay touches in those ten seconds
// the collector runs without pause and blocks are read from disk again between two reads
// of the same block. READY's byte limit bounds what can be touched, so this limit is never
// below it, and it bounds the server by what READY may hold.
func ServerMemoryLimit(readyMaxBytes int64) (int64, error) {
	if readyMaxBytes <= 0 || readyMaxBytes > math.MaxInt64-ServerMemoryHeadroom {
		return 0, fmt.Errorf("READY byte limit %d: want a positive byte count", readyMaxBytes)
	}
	return readyMaxBytes + ServerMemoryHeadroom, nil
}
