package preprocessor

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"pgtrain/internal/metrics"
)

// newMetrics reports the counters the preprocessor keeps for its logs and /statsz.
func newMetrics(n *counters) metrics.Collectors {
	c := func(name, help string, v *atomic.Int64) prometheus.Collector {
		return metrics.CounterOf("preprocessor", name, help, v)
	}
	return metrics.Collectors{
		c("pages_processed_total", "RAW pages acknowledged after their READY batch was stored.", &n.processed),
		c("rows_processed_total", "Rows in those pages.", &n.rows),
		c("duplicates_dropped_total", "READY batches READY already held (a redelivered or re-published page): the copy was dropped.", &n.duplicates),
		c("redeliveries_total", "RAW pages delivered more than once.", &n.redeliveries),
		c("backpressure_waits_total", "Pages that waited because READY was full.", &n.backpressure),
		c("pages_failed_total", "Pages whose data failed their job (a bad row).", &n.failed),
		c("pages_terminated_total", "Pages terminated because they cannot be decoded.", &n.terminated),
		c("pages_without_plan_total", "Pages put back because their job had no plan.", &n.noPlan),
		c("publish_retries_total", "READY publishes retried after an error other than a full stream.", &n.retries),
	}
}

// Describe implements prometheus.Collector, so a process registers the preprocessor on its
// registry (see internal/metrics).
func (p *Preprocessor) Describe(ch chan<- *prometheus.Desc) { p.m.Describe(ch) }

// Collect implements prometheus.Collector.
func (p *Preprocessor) Collect(ch chan<- prometheus.Metric) { p.m.Collect(ch) }
