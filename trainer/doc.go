// Package trainer is pgtrain's trainer role. It claims a job from the coordinator, reads the
// job's READY batches from JetStream in the one order that the plan and the seed define, and
// feeds them to a model engine epoch after epoch.
//
// The order is what makes training reproducible. For epoch e the trainer visits the ranges of
// plan.EpochOrder(e) and, within a range, pages 0, 1, 2, ... of read pass plan.PassOf(e),
// each fetched by its own subject; a page that is not there yet is waited for, never skipped.
// A training range's rows are permuted with a generator seeded by (seed, epoch, range) and cut
// into mini-batches; rows left at the end of a range start the next range's first batch, so
// only the last batch of an epoch is partial. The examples the model sees, and so its
// weights, depend only on the data, the spec and the seed: not on how many fetchers there
// were, nor on the order in which batches arrived.
//
// Memory is bounded by Config.Prefetch+1 ranges whatever the table size: a reader goroutine
// works ahead of the model, in the same order, but only that far, and each held range's
// memory, sized for the plan's largest range, is allocated once and read into again. It
// keeps up to Config.ReadAhead direct gets in flight, of the pages it will decode next (the
// plan's pages of a range, then the next range's), so that the NATS server's round trips
// overlap the decoding; pages are still decoded and checked one by one, in order. After each range the
// trainer writes a checkpoint (weights, optimizer state and its own position), tells the
// coordinator how far it got (which moves the fetchers' lease window) and, when later epochs
// re-read PostgreSQL, purges the range from READY. A trainer killed at any point and started
// again with the same TrainerID resumes from its checkpoint and ends with bit-identical
// weights. While it waits for data it repeats its last report as a heartbeat, so the
// coordinator does not hand the job to another trainer; when the coordinator answers that
// the job is gone, the trainer stops.
//
// Every epoch the trainer checks exactly-once delivery: the count and key checksums of the
// rows it trained and validated on must equal what SQL said when the job was planned.
//
// After the last epoch the trainer exports the model in the TF.js Layers format, with the
// plan's preprocessing, the data's row count and checksum and the final metrics in
// model.json's metadata (messages.ModelMeta), stores it in the bus's model bucket, and only
// then reports the job done.
package trainer
