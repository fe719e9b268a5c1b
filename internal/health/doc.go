// Package health serves the probe endpoints of a worker process (fetcher, preprocessor,
// trainer) on its own small HTTP listener, so that a supervisor (kubernetes, compose, the
// fault-injection suite) can tell a live process from a ready one and read its counters:
//
//	GET /healthz  200 while the process serves at all (liveness)
//	GET /readyz   200 when every dependency answers (NATS, PostgreSQL), else 503 with the reason
//	GET /statsz   the role's counters as JSON (pages, rows, retries, redeliveries, ...)
//	GET /metrics  the same and more in the Prometheus text format (WithMetrics)
//
// The coordinator serves /healthz and /readyz on its API listener instead.
package health
