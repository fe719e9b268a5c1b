// Package scorer is the prediction role: it consumes the READY batches of prediction jobs
// (in any order, through one durable consumer per job that all scorers share), runs the
// model's forward pass, and writes each batch to the job's output table idempotently (COPY
// into a temporary table, then INSERT ... ON CONFLICT (key) DO UPDATE, in one transaction),
// so a batch delivered twice cannot double a row. It then reports the batch to the
// coordinator, which moves the lease window and ends the job once every range is written,
// and only then acknowledges it. Any number of scorers may run.
package scorer
