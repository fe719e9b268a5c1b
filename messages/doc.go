// Package messages is pgtrain's wire contract: the job spec a client submits, the plan the
// coordinator derives from it, the range leases fetchers hold, the columnar raw and ready
// batches that travel on JetStream, and the progress the trainer reports. Names builds the
// stream, bucket and subject names from a deployment's prefix.
//
// It is a leaf package (standard library and msgpack only) so that every role, and any
// external tool, can speak the protocol without pulling in the rest of pgtrain. Every
// message carries a schema version; decoding a message of an unknown version fails with
// ErrUnknownVersion rather than guessing.
package messages
