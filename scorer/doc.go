// Package scorer is the prediction role: it consumes the pages of prediction jobs from
// SCORE, RAW's counterpart for prediction jobs (in any order, through one durable consumer
// per job that all scorers share), applies the model's preprocessing with the
// code that preprocessed its training data (preprocessor/transform), runs the model's
// forward pass, and writes each batch to the job's output table idempotently (recorded in
// the job's ledger in the transaction that copies it, or COPY then INSERT ... ON CONFLICT
// (key) DO UPDATE for mode append), so a batch delivered twice cannot double a row. It then
// reports the batch to the coordinator, which moves the lease window and ends the job once
// every range is written, and only then acknowledges it, which takes the page off SCORE. Any
// number of scorers may run.
package scorer
