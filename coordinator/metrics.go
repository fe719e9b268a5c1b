package coordinator

import (
	"context"
	"maps"
	"net/http"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"pgtrain/internal/metrics"
	"pgtrain/messages"
)

// coordMetrics are the coordinator's Prometheus metrics: the planning histogram it observes,
// and the job and bus state it reads at scrape time (a job's counters live in its persisted
// record, so they survive a coordinator restart and go when the job goes).
type coordMetrics struct {
	reg          *prometheus.Registry
	handler      http.Handler
	planSeconds  *prometheus.HistogramVec
	jobState     *prometheus.Desc
	jobRows      *prometheus.Desc
	rowsRead     *prometheus.Desc
	ranges       *prometheus.Desc
	granted      *prometheus.Desc
	expired      *prometheus.Desc
	released     *prometheus.Desc
	resumed      *prometheus.Desc
	trainedRows  *prometheus.Desc
	epochs       *prometheus.Desc
	loss         *prometheus.Desc
	metric       *prometheus.Desc
	busUp        *prometheus.Desc
	streamMsgs   *prometheus.Desc
	streamBytes  *prometheus.Desc
	streamMax    *prometheus.Desc
	rawPending   *prometheus.Desc
	rawInFlight  *prometheus.Desc
	redeliveries *prometheus.Desc
}

func newCoordMetrics() *coordMetrics {
	job := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(metrics.Namespace, "job", name), help, append([]string{"job"}, labels...), nil)
	}
	bus := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(metrics.Namespace, "bus", name), help, labels, nil)
	}
	return &coordMetrics{
		planSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metrics.Namespace, Subsystem: "coordinator", Name: "planning_seconds",
			Help: "Time to plan a job: schema checks, statistics, key split (successful plans).",
			// 50 ms to about 7 minutes: a small table plans in well under a second, a large
			// one in minutes.
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
		}, []string{"source"}),
		jobState:     job("state", "1, labelled with the job's current state (planning, running, done, failed).", "state"),
		jobRows:      job("rows", "Rows the plan expects per epoch (training and validation)."),
		rowsRead:     job("rows_read_total", "Rows the fetchers reported read for the job, over every read pass."),
		ranges:       job("ranges", "Key ranges of the current read passes by state (pending, leased, done).", "state"),
		granted:      job("leases_granted_total", "Range leases granted."),
		expired:      job("leases_expired_total", "Range leases that expired without a report (a dead or stuck fetcher)."),
		released:     job("leases_released_total", "Range leases handed back by their fetcher."),
		resumed:      job("leases_resumed_total", "Leases that resumed a range from another holder's last recorded page."),
		trainedRows:  job("epoch_trained_rows", "Rows the trainer reported in the current epoch."),
		epochs:       job("epochs_completed", "Epochs trained to their end."),
		loss:         job("epoch_loss", "Mean loss of the last completed epoch (val_loss for split=validation).", "split"),
		metric:       job("epoch_metric", "A compiled metric of the last completed epoch (val_* for split=validation).", "metric", "split"),
		busUp:        bus("up", "1 when the last scrape read the streams' state from JetStream, else 0."),
		streamMsgs:   bus("stream_messages", "Messages in the stream (RAW: pages waiting for a preprocessor; READY: batches).", "stream"),
		streamBytes:  bus("stream_bytes", "Bytes held by the stream.", "stream"),
		streamMax:    bus("stream_max_bytes", "The stream's byte limit (0: none).", "stream"),
		rawPending:   bus("raw_pending_messages", "RAW pages not yet delivered to a preprocessor."),
		rawInFlight:  bus("raw_ack_pending_messages", "RAW pages delivered and not yet acknowledged."),
		redeliveries: bus("raw_redeliveries_total", "RAW deliveries beyond a page's first (a preprocessor died or timed out)."),
	}
}

// Registry is the coordinator's Prometheus registry, served at GET /metrics: the Go runtime,
// the process, the source pools, the jobs and the bus. A process that runs other roles beside
// the coordinator (pgtrain up) registers them here so that one /metrics shows all.
func (c *Coordinator) Registry() *prometheus.Registry { return c.m.reg }

func (c *Coordinator) registerMetrics() {
	c.m = newCoordMetrics()
	c.m.reg = metrics.NewRegistry()
	c.m.reg.MustRegister(c.m.planSeconds, metrics.NewPoolCollector("coordinator", c.sources), coordCollector{c})
	c.m.handler = metrics.Handler(c.m.reg)
}

// coordCollector reads the jobs and the bus at scrape time.
type coordCollector struct{ c *Coordinator }

func (cc coordCollector) Describe(ch chan<- *prometheus.Desc) {
	m := cc.c.m
	for _, d := range []*prometheus.Desc{m.jobState, m.jobRows, m.rowsRead, m.ranges, m.granted, m.expired, m.released,
		m.resumed, m.trainedRows, m.epochs, m.loss, m.metric, m.busUp, m.streamMsgs, m.streamBytes, m.streamMax,
		m.rawPending, m.rawInFlight, m.redeliveries} {
		ch <- d
	}
}

func (cc coordCollector) Collect(ch chan<- prometheus.Metric) {
	c, m := cc.c, cc.c.m
	c.mu.Lock()
	now := c.now()
	jobs := make([]messages.JobStatus, 0, len(c.order))
	for _, j := range c.order {
		jobs = append(jobs, j.status(now))
	}
	c.mu.Unlock()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	for _, st := range jobs {
		id := st.ID
		gauge(m.jobState, 1, id, st.State)
		f := st.Fetch
		gauge(m.jobRows, float64(st.Rows), id)
		counter(m.rowsRead, float64(f.RowsRead), id)
		gauge(m.ranges, float64(f.Pending), id, "pending")
		gauge(m.ranges, float64(f.Leased), id, "leased")
		gauge(m.ranges, float64(f.Done), id, "done")
		counter(m.granted, float64(f.Grants), id)
		counter(m.expired, float64(f.Expired), id)
		counter(m.released, float64(f.Released), id)
		counter(m.resumed, float64(f.Resumed), id)
		gauge(m.trainedRows, float64(st.Trainer.Rows), id)
		gauge(m.epochs, float64(len(st.Results)), id)
		if n := len(st.Results); n > 0 {
			r := st.Results[n-1]
			gauge(m.loss, r.Loss, id, "train")
			for _, k := range slices.Sorted(maps.Keys(r.Metrics)) {
				gauge(m.metric, r.Metrics[k], id, k, "train")
			}
			if r.ValLoss != nil {
				gauge(m.loss, *r.ValLoss, id, "validation")
				for _, k := range slices.Sorted(maps.Keys(r.ValMetrics)) {
					gauge(m.metric, r.ValMetrics[k], id, k, "validation")
				}
			}
		}
	}
	// NATS down is a value (bus_up 0), not a failed scrape: the job metrics still count.
	bs, err := c.busStatus(context.Background())
	if err != nil {
		c.log.Debug("metrics: reading the bus failed", "error", err)
		gauge(m.busUp, 0)
		return
	}
	gauge(m.busUp, 1)
	for _, s := range []messages.StreamStatus{bs.Raw, bs.Score, bs.Ready} {
		gauge(m.streamMsgs, float64(s.Messages), s.Name)
		gauge(m.streamBytes, float64(s.Bytes), s.Name)
		gauge(m.streamMax, float64(max(s.MaxBytes, 0)), s.Name)
	}
	gauge(m.rawPending, float64(bs.Preprocessors.Pending))
	gauge(m.rawInFlight, float64(bs.Preprocessors.AckPending))
	counter(m.redeliveries, float64(bs.Preprocessors.Redeliveries))
}

// handleMetrics serves the registry. It needs a read token like GET /v1/jobs, whose job ids,
// tables and losses it shows; Prometheus sends one with `authorization: {credentials_file}`.
func (c *Coordinator) handleMetrics(w http.ResponseWriter, r *http.Request) {
	c.m.handler.ServeHTTP(w, r)
}
