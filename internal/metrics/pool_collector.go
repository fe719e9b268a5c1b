package metrics

import (
	"maps"
	"slices"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// PoolCollector reports pgxpool.Stat of each PostgreSQL source pool at scrape time, labelled
// by role and source (DefaultSource for "").
type PoolCollector struct {
	role  string
	pools map[string]*pgxpool.Pool
	descs []poolMetric
}

type poolMetric struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(*pgxpool.Stat) float64
}

// NewPoolCollector reports the pools of one role; the map must not change afterwards.
func NewPoolCollector(role string, pools map[string]*pgxpool.Pool) *PoolCollector {
	labels := []string{"source"}
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "pgxpool", name), help, labels, prometheus.Labels{"role": role})
	}
	gauge, counter := prometheus.GaugeValue, prometheus.CounterValue
	return &PoolCollector{role: role, pools: pools, descs: []poolMetric{
		{d("acquired_connections", "Connections currently checked out of the pool."), gauge, func(s *pgxpool.Stat) float64 { return float64(s.AcquiredConns()) }},
		{d("idle_connections", "Idle connections in the pool."), gauge, func(s *pgxpool.Stat) float64 { return float64(s.IdleConns()) }},
		{d("constructing_connections", "Connections being opened."), gauge, func(s *pgxpool.Stat) float64 { return float64(s.ConstructingConns()) }},
		{d("total_connections", "Connections in the pool (acquired, idle and being opened)."), gauge, func(s *pgxpool.Stat) float64 { return float64(s.TotalConns()) }},
		{d("max_connections", "Largest size of the pool."), gauge, func(s *pgxpool.Stat) float64 { return float64(s.MaxConns()) }},
		{d("acquires_total", "Successful acquires from the pool."), counter, func(s *pgxpool.Stat) float64 { return float64(s.AcquireCount()) }},
		{d("acquire_seconds_total", "Time spent in successful acquires."), counter, func(s *pgxpool.Stat) float64 { return s.AcquireDuration().Seconds() }},
		{d("empty_acquires_total", "Successful acquires that had to wait for a connection."), counter, func(s *pgxpool.Stat) float64 { return float64(s.EmptyAcquireCount()) }},
		{d("empty_acquire_wait_seconds_total", "Time spent waiting in acquires that found the pool empty."), counter, func(s *pgxpool.Stat) float64 { return s.EmptyAcquireWaitTime().Seconds() }},
		{d("canceled_acquires_total", "Acquires cancelled by their context."), counter, func(s *pgxpool.Stat) float64 { return float64(s.CanceledAcquireCount()) }},
		{d("new_connections_total", "Connections opened."), counter, func(s *pgxpool.Stat) float64 { return float64(s.NewConnsCount()) }},
		{d("lifetime_closed_connections_total", "Connections closed for exceeding their maximum lifetime."), counter, func(s *pgxpool.Stat) float64 { return float64(s.MaxLifetimeDestroyCount()) }},
		{d("idle_closed_connections_total", "Connections closed for being idle too long."), counter, func(s *pgxpool.Stat) float64 { return float64(s.MaxIdleDestroyCount()) }},
	}}
}

// Describe implements prometheus.Collector.
func (c *PoolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.descs {
		ch <- m.desc
	}
}

// Collect implements prometheus.Collector.
func (c *PoolCollector) Collect(ch chan<- prometheus.Metric) {
	for _, source := range slices.Sorted(maps.Keys(c.pools)) {
		s := c.pools[source].Stat()
		for _, m := range c.descs {
			ch <- prometheus.MustNewConstMetric(m.desc, m.kind, m.value(s), SourceLabel(source))
		}
	}
}
