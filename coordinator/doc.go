// Package coordinator is pgtrain's control plane: it accepts jobs over HTTP, plans them
// against the source database, and hands out the key ranges the fetchers read.
//
// Planning checks every name against the catalog (never splicing user text into SQL),
// splits the key space into ranges of about equal row count (row-count quantiles, read from
// a histogram of an integer key refined key by key where keys cluster: equal-width strides
// are wrong for skewed keys), and computes the preprocessing statistics
// and the exact row count and key checksum of each range, which the trainer must see, in
// one binary COPY: every value and its square are summed exactly, so the statistics are the
// same bits whatever order the rows come in. Medians, text widths and vocabularies are SQL
// aggregates. With
// consistency "snapshot" the whole plan is computed inside an exported snapshot that the
// fetchers join, and the coordinator holds that snapshot open until every read pass is done
// (with replay, only the first pass reads PostgreSQL).
//
// Range leases, trainer claims and job states live in the JetStream KV bucket, written with
// compare-and-set, so a restarted coordinator resumes where the previous one stopped. Leases
// are granted only inside the trainer's window (its position in the deterministic range
// order plus Config.Window), which is how a slow trainer slows the fetchers down. A sweep's
// variants read in their own orders; a range is leased inside any of their windows.
//
// Every route but /healthz and /readyz needs a bearer token (Config.Tokens, LoadTokens) with
// the route's scope: read and submit for users, worker for the fetchers, preprocessors and
// trainers. Without tokens the API is open and Validate refuses a non-loopback address
// unless InsecureNoAuth is set. TLSCertFile and TLSKeyFile serve it over HTTPS. The routes
// are listed once, in api(), and described in openapi.json (served at /v1/openapi.json); a
// test keeps the two the same.
//
// A job ends done, failed or cancelled. Ending releases its snapshot and purges its batches;
// DELETE /v1/jobs/{id} then removes its plan and state, and Config.KeepJobs and
// Config.KeepJobsFor make the coordinator delete old finished jobs itself.
//
// GET /metrics (read scope) serves Registry in the Prometheus text format: planning time,
// each job's leases, rows, epochs and losses, the bus's fill and the source pools.
//
// Finished models are read from the bus's model store: GET /v1/models lists them with their
// metadata, and POST /v1/models/{id}:predict (TF Serving's shape) applies a model to raw
// column values through the preprocessors' transform and the engine's forward pass.
package coordinator
