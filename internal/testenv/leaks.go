package testenv

import "go.uber.org/goleak"

// KnownLeaks are the goroutines goleak ignores in every package's TestMain: only those a
// library leaves behind by itself, never ours.
//
// nats.go's jetstream starts resetPendingAcksOnReconnect at a first async publish (the object
// store publishes so); when the connection closes before that goroutine has read its status
// channel, the close sets the channel to nil and the goroutine waits on nil for ever.
func KnownLeaks() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreTopFunction("github.com/nats-io/nats.go/jetstream.(*jetStream).resetPendingAcksOnReconnect"),
	}
}
