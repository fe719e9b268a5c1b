package messages

import (
	"errors"
	"fmt"
)

// SchemaVersion is written into every message this package encodes.
const SchemaVersion = 1

// ErrUnknownVersion is returned when a message carries a schema version this build cannot read.
var ErrUnknownVersion = errors.New("unknown message schema version")

func checkVersion(kind string, v int) error {
	if v != SchemaVersion {
		return fmt.Errorf("%s: version %d (this build reads %d): %w", kind, v, SchemaVersion, ErrUnknownVersion)
	}
	return nil
}
