package trainer

import (
	"github.com/prometheus/client_golang/prometheus"

	"pgtrain/internal/metrics"
	"pgtrain/messages"
)

// Split label values: what a row or a metric was computed on.
const (
	splitTrain      = "train"
	splitValidation = "validation"
)

// trainMetrics are the trainer's Prometheus metrics, by job.
type trainMetrics struct {
	rows          *prometheus.CounterVec // job, split
	epochs        *prometheus.GaugeVec   // job
	loss          *prometheus.GaugeVec   // job, split
	metric        *prometheus.GaugeVec   // job, metric, split
	rowsPerSecond *prometheus.GaugeVec   // job
	all           metrics.Collectors
}

func newTrainMetrics() *trainMetrics {
	opts := func(name, help string) prometheus.GaugeOpts {
		return prometheus.GaugeOpts{Namespace: metrics.Namespace, Subsystem: "trainer", Name: name, Help: help}
	}
	m := &trainMetrics{
		rows: prometheus.NewCounterVec(prometheus.CounterOpts(opts("rows_total", "Rows trained on (split=train) or evaluated (split=validation); a row replayed after a restart counts again.")),
			[]string{"job", "split"}),
		epochs:        prometheus.NewGaugeVec(opts("epochs_completed", "Epochs of the job trained to their end."), []string{"job"}),
		loss:          prometheus.NewGaugeVec(opts("epoch_loss", "Mean loss of the last completed epoch (val_loss for split=validation)."), []string{"job", "split"}),
		metric:        prometheus.NewGaugeVec(opts("epoch_metric", "A compiled metric of the last completed epoch (val_* for split=validation)."), []string{"job", "metric", "split"}),
		rowsPerSecond: prometheus.NewGaugeVec(opts("epoch_rows_per_second", "Training rows per second of the last completed epoch."), []string{"job"}),
	}
	m.all = metrics.Collectors{m.rows, m.epochs, m.loss, m.metric, m.rowsPerSecond}
	return m
}

// epoch records a completed epoch's result.
func (m *trainMetrics) epoch(job string, res messages.EpochResult) {
	m.epochs.WithLabelValues(job).Set(float64(res.Epoch + 1))
	m.loss.WithLabelValues(job, splitTrain).Set(res.Loss)
	for k, v := range res.Metrics {
		m.metric.WithLabelValues(job, k, splitTrain).Set(v)
	}
	if res.ValLoss != nil {
		m.loss.WithLabelValues(job, splitValidation).Set(*res.ValLoss)
		for k, v := range res.ValMetrics {
			m.metric.WithLabelValues(job, k, splitValidation).Set(v)
		}
	}
	m.rowsPerSecond.WithLabelValues(job).Set(res.RowsPerSecond)
}

// Describe implements prometheus.Collector, so a process registers the trainer on its
// registry (see internal/metrics).
func (t *Trainer) Describe(ch chan<- *prometheus.Desc) { t.m.all.Describe(ch) }

// Collect implements prometheus.Collector.
func (t *Trainer) Collect(ch chan<- prometheus.Metric) { t.m.all.Collect(ch) }
