// Package bus is pgtrain's one place for JetStream wiring: connecting with reconnects, and
// declaring the RAW and READY streams, the preprocessors' consumer and the state KV bucket.
// Roles call Ensure at start-up; declarations are idempotent, so any role may start first.
// Limits.Prefix names everything, so deployments with different prefixes share a server.
package bus
