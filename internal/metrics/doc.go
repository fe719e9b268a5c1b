// Package metrics is the Prometheus wiring every pgtrain role shares: a registry per process
// with the Go runtime and process collectors, the /metrics handler (Prometheus text format),
// and a collector of pgxpool statistics.
//
// A role exposes its own metrics by implementing prometheus.Collector (the coordinator,
// fetcher, preprocessor and trainer do); its process registers it on the registry that
// NewRegistry returns and serves Handler(reg):
//
//	reg := metrics.NewRegistry()
//	reg.MustRegister(role, metrics.NewPoolCollector("fetcher", pools))
//	health.Start(addr, ready, stats, log, health.WithMetrics(metrics.Handler(reg)))
//
// Every name starts with Namespace and follows the Prometheus conventions: base units
// (seconds, bytes), _total on counters.
package metrics
