// Package preprocessor turns RAW pages into READY batches. Preprocessors share one durable
// pull consumer on the RAW work queue; each decodes a page, transforms it with its job's
// plan (package transform) and publishes the result to the batch's own READY subject. It
// acknowledges the RAW page only after READY has acknowledged the batch, and READY keeps at
// most one message per subject, so a crash or a redelivery never loses or doubles a batch.
//
// When READY is full (a slow trainer), a preprocessor holds its page and retries, keeping
// it from being redelivered, instead of negatively acknowledging it: every nak counts
// towards the consumer's MaxDeliver, past which a page would never be delivered again.
package preprocessor
