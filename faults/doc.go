// Package faults is pgtrain's fault-injection suite: it proves exactly-once delivery and
// deterministic training under crashes, across real OS processes.
//
// TestMain builds the pgtrain binary from this tree once, starts a PostgreSQL server (its
// own process, restartable on the same port) and creates a 200,000-row table. Each scenario
// then starts a cluster on loopback, every role its own process of that binary with JSON
// logs in a file: `pgtrain nats` (an embedded nats-server, restartable on the same port and
// store), the coordinator, 3 fetchers, 2 preprocessors and a trainer. Authentication is on,
// as in production: the coordinator reads a token file, the roles send a worker token and
// the test (and `pgtrain status`) a user token. It submits a 3-epoch
// job (20 key ranges of 10,000 rows, pages of 1,000 rows, dropout, a seed), injects one
// fault while the job runs, and checks:
//
//   - the job finishes on its own (no trainer stall longer than a minute);
//   - in every epoch the trainer saw each row exactly once: the row count and the
//     order-independent key checksum of the training and of the validation rows equal what
//     SQL computes on the table;
//   - the final weights are bit-identical to a clean run's with the same seed, and so is
//     every epoch's loss;
//   - RAW accepted exactly as many pages as in the clean run (a page published again after
//     a crash was dropped by its message id), except across a NATS restart;
//   - the leases never count a row twice, and nothing is left in RAW.
//
// The scenarios:
//
//	clean, replay and re-read       the references (later epochs replay READY, or re-read PostgreSQL)
//	fetcher kill -9 mid-range       its lease expires, another fetcher resumes after the last recorded page
//	fetcher kill -9 after publish   fault point: RAW has the page, the lease does not; RAW drops the re-publish
//	preprocessor kill -9            fault points between the READY publish and the RAW ack, and just after the ack;
//	                                the page comes back, READY refuses its second copy, `pgtrain status` counts it
//	trainer kill -9, restart        fault point after a checkpoint, then kill -9 mid-epoch; resumes from its checkpoint
//	coordinator kill -9, restart    job state, results and leases come back from JetStream KV
//	nats-server restart             twice, file store kept; the workers' /readyz follow the bus down and up
//	PostgreSQL restart              fetchers retry the same page from the same key, pools reconnect
//	fetcher SIGTERM                 hands its lease back with its progress and exits 0; no lease expires
//	slow trainer                    --step-delay, READY below the configured window's batches: the window is capped
//	                                to READY, and READY, RAW, the fetchers' lead and every process's peak RSS stay bounded
//	live table, snapshot            rows inserted, deleted, updated during the run; the job trains on the snapshot's rows
//	prediction                      a 60,000-row table scored by 2 scorers: kill -9 of a scorer after a committed
//	                                write (fault point), of a fetcher mid-range, and of the coordinator mid-job
//	                                (restarted); every key written once, the output equal to a clean run's
//
// The replicated scenarios (replicated_test.go) run three `pgtrain nats` processes as one
// JetStream cluster, the roles with all three URLs and --stream-replicas 3, and a smaller job
// (30,000 rows in ranges of 2,000) whose clean run on one server is their reference:
//
//	R3: RAW leader kill -9          the node leading RAW dies mid-epoch 2; publishes wait for the new leader
//	R3: READY leader kill -9        the node leading READY dies while the trainer replays it
//	R3: KV leader kill -9           the node leading the state bucket dies while fetchers hold leases
//	R3: one node away               a node dies before the job is submitted and stays down
//
// Each finds the leader through JetStream's stream info, kills its node, and logs the time
// until the stream reports a leader again (the failover); the summary has a table of them.
//
// Precise kill points use the product's testing hook internal/faultpoint (PGTRAIN_FAULT);
// everything else is done to the processes from outside (SIGKILL, SIGTERM, restarts).
//
// Run it alone with `go test -count=1 -timeout 15m -v ./faults/`. PGTRAIN_FAULTS_ROWS sets
// the table size (a longer soak), PGTRAIN_FAULTS_REPORT writes the scenario table to a file,
// PGTRAIN_FAULTS_LOGS keeps every process's log under a directory.
package faults
