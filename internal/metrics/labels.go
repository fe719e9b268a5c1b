package metrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultSource is the source label of the default source (named "" in the configuration),
// since an empty label value reads as no label at all.
const DefaultSource = "default"

// SourceLabel is the label value of a source name.
func SourceLabel(name string) string {
	if name == "" {
		return DefaultSource
	}
	return name
}

// Collectors is a list of collectors that is itself one: a role keeps its metrics in it and
// implements prometheus.Collector by delegating to it.
type Collectors []prometheus.Collector

// Describe implements prometheus.Collector.
func (cs Collectors) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range cs {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (cs Collectors) Collect(ch chan<- prometheus.Metric) {
	for _, c := range cs {
		c.Collect(ch)
	}
}

// CounterOf reports an atomic counter a role already keeps (for its logs and /statsz) as a
// Prometheus counter, read at scrape time.
func CounterOf(subsystem, name, help string, v *atomic.Int64) prometheus.CounterFunc {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: Namespace, Subsystem: subsystem, Name: name, Help: help},
		func() float64 { return float64(v.Load()) })
}
