// Command pipeline is pgtrain's pipeline benchmark: `make bench`, or
//
//	go run ./bench/pipeline --rows 2000000 --out bench
//
// It starts a throwaway PostgreSQL cluster, creates a table (bigint key, 16 real features,
// one text category, a real label) and measures, one after another on that table:
//
//  1. the ceiling: a binary COPY of the needed columns into a writer that discards it;
//  2. the usual ways a user would otherwise load training data into float32 arrays (one
//     query into memory, a server-side cursor read 1024 rows at a time, COPY ... CSV parsed
//     into arrays), written in Go and, where Debian's psycopg2, NumPy and pandas are
//     installed, the same three in Python (bench/baseline.py);
//  3. pgtrain end to end, with every role in its own process (the real `pgtrain` binary for
//     NATS, the coordinator, the fetchers and the preprocessors): rows per second delivered
//     to the trainer in the first epoch (read from PostgreSQL) and in later epochs (replayed
//     from READY), with a model that does no work and with an MLP, with 1, 2 and 4 fetchers;
//  4. the peak RSS of every role at two table sizes (by default 1M and 8M rows);
//  5. the time from job submission to the first training step;
//  6. batch prediction: an MLP trained for one epoch scores the table with real
//     `pgtrain scorer` processes (--scorers, 2 by default), rows per second from the
//     submission to the job being done, beside the ceiling of section 1 (in) and a binary
//     COPY FROM STDIN of as many rows into a (key, value) table (out).
//
// Every baseline and every role runs as its own process, so that one's memory does not
// pollute another's; peak RSS is the kernel's high-water mark of each process (ru_maxrss
// after it exits). The harness re-executes itself for the Go baselines (--baseline NAME)
// and for the trainer (--role trainer): the trainer role is the trainer package on the
// pure-Go engine, wrapped to record when the first step runs, or, for "a model that does no
// work", with the engine replaced by one whose steps return at once.
//
// The results go to results.md and results.json in --out; --profile DIR instead runs one
// end-to-end job with every role and the NATS server in this process and writes a CPU
// profile, which is how the time is found when a target is missed.
package main
