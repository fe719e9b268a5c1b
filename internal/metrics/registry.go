package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace is the first part of every pgtrain metric name.
const Namespace = "pgtrain"

// NewRegistry returns a registry holding the Go runtime and process collectors. Each process
// (and each test) has its own rather than the global one, so that tests running several roles
// in one process do not collide and a role's metrics are only the ones it registered.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// Handler serves the registry in the Prometheus text format (OpenMetrics only when a scraper
// asks for it). A collector that fails is reported as a 500 rather than a partial answer
// that would look like counters reset.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		Registry:      reg, // promhttp's own request counters
		ErrorHandling: promhttp.HTTPErrorOnError,
	})
}
