// Package fetcher is pgtrain's reader of PostgreSQL. A Fetcher leases one key range at a
// time from the coordinator, reads it in keyset pages through a shared pgxpool (binary
// results, decoded by hand; numeric columns in their own types, only numeric and domains
// cast to float8), encodes each page as a columnar RAW batch and publishes it to JetStream
// with a deterministic message id, then records the page on the lease.
//
// The page sequence of a range is a pure function of the data and the plan (given the bus's
// max payload): a fetcher that takes over an expired lease resumes at the lease's next page
// after its last key and publishes exactly the pages the first holder would have, so a
// re-published page is dropped by the stream's deduplication.
package fetcher
