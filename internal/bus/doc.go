// Package bus is pgtrain's one place for JetStream wiring: connecting with reconnects, and
// declaring the RAW and READY streams, the preprocessors' consumer, the state KV bucket and
// the Object Store bucket of finished models (PutModel, ModelFile, ListModels, PullModel).
// Roles call Ensure at start-up; declarations are idempotent, so any role may start first.
// Limits.Prefix names everything, so deployments with different prefixes share a server.
package bus
