package fetcher

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"pgtrain/internal/metrics"
)

// fetchMetrics are the fetcher's Prometheus metrics; the counters it already keeps for its
// logs are read at scrape time, the ones by source are kept here.
type fetchMetrics struct {
	rowsRead, bytesRead, pages, pageBytes *prometheus.CounterVec
	all                                   metrics.Collectors
}

func newFetchMetrics(n *counters) *fetchMetrics {
	vec := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metrics.Namespace, Subsystem: "fetcher", Name: name, Help: help}, []string{"source"})
	}
	m := &fetchMetrics{
		rowsRead:  vec("rows_read_total", "Rows read from PostgreSQL and published to RAW (a page read again after a lost lease counts again)."),
		bytesRead: vec("read_bytes_total", "Bytes of row values PostgreSQL sent (a page's look-ahead row included)."),
		pages:     vec("pages_published_total", "Pages published to RAW, duplicates the stream dropped included."),
		pageBytes: vec("published_bytes_total", "Bytes of encoded pages published to RAW."),
	}
	c := func(name, help string, v *atomic.Int64) prometheus.Collector {
		return metrics.CounterOf("fetcher", name, help, v)
	}
	m.all = metrics.Collectors{m.rowsRead, m.bytesRead, m.pages, m.pageBytes,
		c("ranges_completed_total", "Key ranges read to their end and completed at the coordinator.", &n.ranges),
		c("duplicate_pages_total", "Pages RAW already held (a resumed range or a retried publish): the stream dropped the copy.", &n.duplicates),
		c("read_retries_total", "Page reads retried after a PostgreSQL error.", &n.readRetries),
		c("publish_retries_total", "Publishes retried after a NATS error.", &n.publishRetries),
		c("leases_lost_total", "Leases the coordinator took back while this fetcher held them.", &n.leasesLost),
		c("leases_released_total", "Leases handed back (shutdown, or a job this fetcher cannot read).", &n.released),
		c("jobs_failed_total", "Jobs failed for a permanent read error.", &n.jobsFailed),
	}
	return m
}

// published counts a page published to RAW from a job of source.
func (m *fetchMetrics) published(source string, p *Page) {
	l := metrics.SourceLabel(source)
	m.rowsRead.WithLabelValues(l).Add(float64(p.Batch.Rows()))
	m.bytesRead.WithLabelValues(l).Add(float64(p.WireBytes))
	m.pages.WithLabelValues(l).Inc()
	m.pageBytes.WithLabelValues(l).Add(float64(len(p.Data)))
}

// Describe implements prometheus.Collector, so a process registers the fetcher on its
// registry (see internal/metrics).
func (f *Fetcher) Describe(ch chan<- *prometheus.Desc) { f.m.all.Describe(ch) }

// Collect implements prometheus.Collector.
func (f *Fetcher) Collect(ch chan<- prometheus.Metric) { f.m.all.Collect(ch) }
