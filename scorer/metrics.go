package scorer

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"pgtrain/internal/metrics"
)

// newMetrics reports the counters the scorer keeps for its logs and /statsz.
func newMetrics(n *counters) metrics.Collectors {
	c := func(name, help string, v *atomic.Int64) prometheus.Collector {
		return metrics.CounterOf("scorer", name, help, v)
	}
	return metrics.Collectors{
		c("batches_written_total", "Pages whose predictions were written and acknowledged.", &n.batches),
		c("rows_written_total", "Rows in those batches.", &n.rows),
		c("redeliveries_total", "Pages delivered more than once.", &n.redeliveries),
		c("write_retries_total", "Batch writes retried after an error that can pass.", &n.retries),
		c("batches_failed_total", "Batches whose job failed (a permanent write or model error).", &n.failed),
	}
}

// Describe implements prometheus.Collector, so a process registers the scorer on its
// registry (see internal/metrics).
func (s *Scorer) Describe(ch chan<- *prometheus.Desc) { s.m.Describe(ch) }

// Collect implements prometheus.Collector.
func (s *Scorer) Collect(ch chan<- prometheus.Metric) { s.m.Collect(ch) }
