package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"pgtrain/internal/workloop"
	"pgtrain/messages"
)

// Limits names and sizes the streams. Zero fields take the defaults.
type Limits struct {
	// Prefix names the streams, the state bucket and the subjects (see messages.Names), so
	// that deployments with different prefixes share a NATS account; "" is
	// messages.DefaultPrefix.
	Prefix string
	// ReadyMaxBytes caps READY on disk. When it is full, preprocessors wait: that is the
	// backpressure that keeps a slow trainer from filling the disk.
	ReadyMaxBytes int64
	// RawMaxAckPending caps unacknowledged RAW pages across all preprocessors.
	RawMaxAckPending int
	// RawAckWait is how long a preprocessor may hold a page before it is redelivered.
	RawAckWait time.Duration
	// RawMaxDeliver bounds redeliveries of a page that keeps failing.
	RawMaxDeliver int
	// Replicas is the number of copies a JetStream cluster keeps of RAW, READY, the state
	// bucket and the model store: 1..MaxReplicas, 0 is 1. A single server holds only 1.
	Replicas int
}

// MaxReplicas is JetStream's bound on a stream's replicas.
const MaxReplicas = 5

// ErrReplicasNotSupported is Ensure's error when Limits.Replicas > 1 and the server is not
// part of a JetStream cluster: waiting cannot mend it.
var ErrReplicasNotSupported = errors.New("replicas > 1 need a JetStream cluster")

// jsErrReplicasNotSupported is nats-server's JSStreamReplicasNotSupportedErr.
const jsErrReplicasNotSupported jetstream.ErrorCode = 10074

// Defaults for Limits.
const (
	DefaultReadyMaxBytes    = 1 << 30
	DefaultRawMaxAckPending = 64
	DefaultRawAckWait       = 30 * time.Second
	DefaultRawMaxDeliver    = 20
)

func (l Limits) withDefaults() Limits {
	if l.Replicas == 0 {
		l.Replicas = 1
	}
	if l.ReadyMaxBytes == 0 {
		l.ReadyMaxBytes = DefaultReadyMaxBytes
	}
	if l.RawMaxAckPending == 0 {
		l.RawMaxAckPending = DefaultRawMaxAckPending
	}
	if l.RawAckWait == 0 {
		l.RawAckWait = DefaultRawAckWait
	}
	if l.RawMaxDeliver == 0 {
		l.RawMaxDeliver = DefaultRawMaxDeliver
	}
	return l
}

// Connect opens an anonymous connection; see ConnectAuth.
func Connect(url, name string, log *slog.Logger) (*nats.Conn, error) {
	return ConnectAuth(url, name, log, Auth{})
}

// ConnectAuth opens a connection that keeps reconnecting for as long as the process runs, so
// a restarted nats-server is a pause, not a failure. name shows in the server's monitoring.
// A server that refuses the credentials twice closes the connection for good, and a refused
// certificate cannot fix itself: Ensure then returns that error instead of waiting.
func ConnectAuth(url, name string, log *slog.Logger, auth Auth) (*nats.Conn, error) {
	authOpts, err := auth.options()
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(url, append([]nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "error", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "url", c.ConnectedUrlRedacted()) }),
		nats.ReconnectErrHandler(func(c *nats.Conn, err error) { dialErrors.Store(c, err) }),
		nats.ClosedHandler(func(c *nats.Conn) { dialErrors.Delete(c) }),
	}, authOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("connecting to nats: %w", err)
	}
	return nc, nil
}

// dialErrors holds each connection's last failed attempt to reach a server: while
// RetryOnFailedConnect retries the first connect, LastError stays nil, and a process
// waiting at start must say why it waits.
var dialErrors sync.Map // *nats.Conn → error

// Bus is a JetStream context with pgtrain's streams declared.
type Bus struct {
	NC     *nats.Conn
	JS     jetstream.JetStream
	Raw    jetstream.Stream
	Score  jetstream.Stream
	Ready  jetstream.Stream
	State  jetstream.KeyValue
	Models jetstream.ObjectStore // finished models (see PutModel)
	Limits Limits
	names  messages.Names
}

// The methods below are what the roles' small bus interfaces ask for.

// JetStream is the JetStream context (its Conn is the connection).
func (b *Bus) JetStream() jetstream.JetStream { return b.JS }

// ReadyStream is the declared READY stream.
func (b *Bus) ReadyStream() jetstream.Stream { return b.Ready }

// StateKV is the declared state bucket.
func (b *Bus) StateKV() jetstream.KeyValue { return b.State }

// Names are the stream, bucket and subject names of the bus's prefix.
func (b *Bus) Names() messages.Names { return b.names }

// Ensure declares (or updates) the streams, the preprocessors' durable consumer, the KV
// bucket and the model bucket, retrying while the server is not reachable yet.
func Ensure(ctx context.Context, nc *nats.Conn, limits Limits) (*Bus, error) {
	limits = limits.withDefaults()
	names, err := messages.NewNames(limits.Prefix)
	if err != nil {
		return nil, fmt.Errorf("bus limits: %w", err)
	}
	if limits.Replicas < 1 || limits.Replicas > MaxReplicas {
		return nil, fmt.Errorf("bus limits: replicas %d: want 1..%d", limits.Replicas, MaxReplicas)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	b := &Bus{NC: nc, JS: js, Limits: limits, names: names}
	err = retry(ctx, func(ctx context.Context) error {
		// Requests would only wait in the reconnect buffer; look again soon.
		if err := connState(nc); err != nil {
			return err
		}
		var err error
		b.Raw, err = js.CreateOrUpdateStream(ctx, RawStreamConfig(names, limits.Replicas))
		if err != nil {
			return declareError(names.RawStream(), limits.Replicas, err)
		}
		b.Score, err = js.CreateOrUpdateStream(ctx, ScoreStreamConfig(names, limits.Replicas))
		if err != nil {
			return declareError(names.ScoreStream(), limits.Replicas, err)
		}
		b.Ready, err = js.CreateOrUpdateStream(ctx, ReadyStreamConfig(names, limits.ReadyMaxBytes, limits.Replicas))
		if err != nil {
			return declareError(names.ReadyStream(), limits.Replicas, err)
		}
		if _, err = b.Raw.CreateOrUpdateConsumer(ctx, PreprocConsumerConfig(names, limits)); err != nil {
			return fmt.Errorf("declaring consumer %s: %w", messages.PreprocDurable, err)
		}
		b.State, err = js.CreateOrUpdateKeyValue(ctx, StateKVConfig(names, limits.Replicas))
		if err != nil {
			return declareError("KV "+names.StateBucket(), limits.Replicas, err)
		}
		b.Models, err = js.CreateOrUpdateObjectStore(ctx, ModelStoreConfig(names, limits.Replicas))
		if err != nil {
			return declareError("object store "+names.ModelBucket(), limits.Replicas, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// declareError names what could not be declared; a server that cannot hold the replicas
// asked for is a permanent ErrReplicasNotSupported, not a server to wait for.
func declareError(what string, replicas int, err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jsErrReplicasNotSupported {
		return permanent{fmt.Errorf("declaring %s with %d replicas: %w: %w", what, replicas, ErrReplicasNotSupported, err)}
	}
	return fmt.Errorf("declaring %s: %w", what, err)
}

// RawStreamConfig: a work queue. A page lives until a preprocessor has turned it into a
// READY batch; the message id deduplicates a fetcher's re-publish after a crash.
func RawStreamConfig(n messages.Names, replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:       n.RawStream(),
		Subjects:   []string{n.RawSubjects()},
		Retention:  jetstream.WorkQueuePolicy,
		Storage:    jetstream.FileStorage,
		Duplicates: 10 * time.Minute,
		Discard:    jetstream.DiscardOld,
		Replicas:   max(replicas, 1),
	}
}

// ScoreStreamConfig is RAW for prediction jobs, a work queue of its own: a page lives until
// a scorer has written its predictions. Its own stream keeps RAW's sequence to the
// preprocessors' pages, which the preprocessors' redelivery count relies on.
func ScoreStreamConfig(n messages.Names, replicas int) jetstream.StreamConfig {
	c := RawStreamConfig(n, replicas)
	c.Name, c.Subjects = n.ScoreStream(), []string{n.ScoreSubjects()}
	return c
}

// StateKVConfig is the bucket of the coordinator's state.
func StateKVConfig(n messages.Names, replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:   n.StateBucket(),
		History:  1,
		Storage:  jetstream.FileStorage,
		Replicas: max(replicas, 1),
	}
}

// ReadyStreamConfig: keeps batches (an epoch can replay them), one message per subject and
// the server refuses a second one, so redelivery can never double a batch. AllowDirect makes
// get-by-subject ten times faster.
func ReadyStreamConfig(n messages.Names, maxBytes int64, replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:                 n.ReadyStream(),
		Subjects:             []string{n.ReadySubjects()},
		Retention:            jetstream.LimitsPolicy,
		Storage:              jetstream.FileStorage,
		MaxMsgsPerSubject:    1,
		MaxBytes:             maxBytes,
		Discard:              jetstream.DiscardNew,
		DiscardNewPerSubject: true,
		AllowDirect:          true,
		Replicas:             max(replicas, 1),
	}
}

// PreprocConsumerConfig is the durable pull consumer all preprocessors share.
func PreprocConsumerConfig(n messages.Names, l Limits) jetstream.ConsumerConfig {
	l = l.withDefaults()
	return jetstream.ConsumerConfig{
		Durable:       messages.PreprocDurable,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       l.RawAckWait,
		MaxAckPending: l.RawMaxAckPending,
		MaxDeliver:    l.RawMaxDeliver,
		FilterSubject: n.RawSubjects(),
	}
}

// IsDuplicateSubject reports whether a publish to READY was refused because the subject
// already holds its batch: the batch is there, which is what the publisher wanted.
func IsDuplicateSubject(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return containsFold(apiErr.Description, "maximum messages per subject exceeded")
	}
	return false
}

// IsStreamFull reports whether a publish was refused because the stream is at its byte limit.
func IsStreamFull(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return containsFold(apiErr.Description, "maximum bytes exceeded")
	}
	return false
}

// Connected returns nil when nc is connected to a server, else the reason, with final set
// when waiting cannot mend it (a refused certificate or credentials, a host name that does
// not resolve): what a process checks at start.
func Connected(nc *nats.Conn) (final bool, err error) {
	err = connState(nc)
	if p, ok := err.(permanent); ok {
		return true, p.error
	}
	return false, err
}

// connState is nil when nc is connected, a permanent error when it never will be, and the
// reason it is not connected yet otherwise.
func connState(nc *nats.Conn) error {
	if nc.IsClosed() {
		return permanent{fmt.Errorf("nats connection closed: %w", nc.LastError())}
	}
	if nc.IsConnected() {
		return nil
	}
	err := nc.LastError()
	if e, ok := dialErrors.Load(nc); ok && err == nil {
		err = e.(error)
	}
	if isTLSRefusal(err) || isUnknownHost(err) {
		return permanent{err}
	}
	if err != nil {
		return fmt.Errorf("not connected to nats yet: %w", err)
	}
	return errors.New("not connected to nats yet")
}

// isUnknownHost reports whether a connection attempt failed because the server's host name
// does not resolve: a misspelt URL, which waiting does not mend. (A DNS server that does not
// answer is a timeout, not this.)
func isUnknownHost(err error) bool {
	var dnsErr *net.DNSError
	return errors.As(err, &dnsErr) && dnsErr.IsNotFound
}

// retry calls f, each attempt under its own timeout, until it succeeds or ctx is done (then
// it returns the last attempt's error).
func retry(ctx context.Context, f func(context.Context) error) error {
	backoff := workloop.Backoff{Min: 100 * time.Millisecond, Max: 3200 * time.Millisecond}
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := f(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if p, ok := err.(permanent); ok {
			return p.error
		}
		if !backoff.Wait(ctx) {
			return err
		}
	}
}

// permanent is an error retry gives up on at once.
type permanent struct{ error }

// isTLSRefusal reports whether a connection attempt failed because one side did not accept
// the other's certificate: retrying cannot fix that.
func isTLSRefusal(err error) bool {
	var opErr *net.OpError
	return errors.Is(err, nats.ErrTLS) || // the handshake failed
		errors.As(err, &opErr) && opErr.Op == "remote error" // the server sent a TLS alert after it
}
