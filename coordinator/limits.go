package coordinator

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"pgtrain/messages"
	"pgtrain/model"
)

// Limits bound what one job may ask for, so that no request makes the coordinator or the
// workers allocate without bound. Zero fields take the defaults below; every bound is
// checked before the model or the job state is built.
type Limits struct {
	// Epochs bounds the spec's epochs: the job state holds one task per range per read pass.
	Epochs int
	// BatchSize bounds the spec's batch_size (the trainer holds a batch of it).
	BatchSize int
	// PageRows bounds the spec's page_rows (a fetcher reads a page of it at once).
	PageRows int
	// VocabSize bounds each vocab_size and buckets (a one-hot or hashed feature is that many
	// inputs wide).
	VocabSize int
	// VocabValueBytes bounds each value of a planned vocabulary or class list: every worker
	// gets the plan in one bus message.
	VocabValueBytes int
	// ClassWeights bounds the entries of class_weight; ScheduleBoundaries the boundaries
	// of a PiecewiseConstantDecay learning-rate schedule.
	ClassWeights       int
	ScheduleBoundaries int
	// SweepVariants bounds the variants of a sweep: each is a model a trainer trains.
	SweepVariants int
	// Layers, Units (per dense layer) and Params (of the whole model on the planned input
	// width) bound the model.
	Layers int
	Units  int
	Params int64
	// JobsPerSource bounds the jobs running (or being planned) on one source; one more is
	// a 429, to retry once a job ends.
	JobsPerSource int
	// PredictBytes bounds the body of an online prediction request (413 over it), and
	// PredictInstances the instances in one (400 over it).
	PredictBytes     int64
	PredictInstances int
	// ModelCache bounds the models kept loaded for online prediction (each as large as its
	// weight files); the least recently used one is dropped first.
	ModelCache int
	// ListJobs bounds the limit of one GET /v1/jobs page.
	ListJobs int
	// Filters bounds a spec's `where` filters and InValues the values of one "in" list:
	// each is a bound parameter and a condition on every read.
	Filters  int
	InValues int
}

// Default limits: generous for tabular training, far below what hurts one host.
const (
	DefaultMaxEpochs        = 1000
	DefaultMaxBatchSize     = 16384
	DefaultMaxPageRows      = maxPageRows
	DefaultMaxVocabSize     = 10000
	DefaultMaxVocabValue    = 1024
	DefaultMaxLayers        = 64
	DefaultMaxUnits         = 8192
	DefaultMaxParams        = 20_000_000 // 80 MB of float32 weights, 240 MB with Adam's moments
	DefaultMaxJobsPerSource = 16
	DefaultMaxListJobs      = 1000
	DefaultMaxFilters       = 16
	DefaultMaxInValues      = 1000
	// DefaultMaxClassWeights is maxLabelClasses: a label never has more classes.
	DefaultMaxClassWeights       = maxLabelClasses
	DefaultMaxScheduleBoundaries = 1000
	DefaultMaxSweepVariants      = messages.DefaultMaxSweepVariants
)

// Default limits of online prediction: a thousand rows of a wide table, and a few models
// of the largest size DefaultMaxParams allows.
const (
	DefaultMaxPredictBytes     = 1 << 20
	DefaultMaxPredictInstances = 1000
	DefaultModelCache          = 8
)

// retryBusy is the Retry-After of a submission refused for the jobs in flight on its source.
const retryBusy = 30 * time.Second

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&l.Epochs, DefaultMaxEpochs)
	def(&l.BatchSize, DefaultMaxBatchSize)
	def(&l.PageRows, DefaultMaxPageRows)
	def(&l.VocabSize, DefaultMaxVocabSize)
	def(&l.VocabValueBytes, DefaultMaxVocabValue)
	def(&l.Layers, DefaultMaxLayers)
	def(&l.Units, DefaultMaxUnits)
	def(&l.JobsPerSource, DefaultMaxJobsPerSource)
	def(&l.PredictInstances, DefaultMaxPredictInstances)
	def(&l.ModelCache, DefaultModelCache)
	def(&l.ListJobs, DefaultMaxListJobs)
	def(&l.Filters, DefaultMaxFilters)
	def(&l.InValues, DefaultMaxInValues)
	def(&l.ClassWeights, DefaultMaxClassWeights)
	def(&l.ScheduleBoundaries, DefaultMaxScheduleBoundaries)
	def(&l.SweepVariants, DefaultMaxSweepVariants)
	if l.Params == 0 {
		l.Params = DefaultMaxParams
	}
	if l.PredictBytes == 0 {
		l.PredictBytes = DefaultMaxPredictBytes
	}
	return l
}

func (l Limits) validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"max epochs", int64(l.Epochs)}, {"max batch size", int64(l.BatchSize)}, {"max page rows", int64(l.PageRows)},
		{"max vocab size", int64(l.VocabSize)}, {"max vocab value bytes", int64(l.VocabValueBytes)}, {"max layers", int64(l.Layers)}, {"max units", int64(l.Units)},
		{"max params", l.Params}, {"max jobs per source", int64(l.JobsPerSource)},
		{"max predict bytes", l.PredictBytes}, {"max predict instances", int64(l.PredictInstances)},
		{"model cache", int64(l.ModelCache)},
		{"max list jobs", int64(l.ListJobs)}, {"max filters", int64(l.Filters)}, {"max in values", int64(l.InValues)},
		{"max class weights", int64(l.ClassWeights)}, {"max schedule boundaries", int64(l.ScheduleBoundaries)},
		{"max sweep variants", int64(l.SweepVariants)},
	} {
		if f.v < 1 {
			errs = append(errs, fmt.Errorf("%s %d: must be at least 1", f.name, f.v))
		}
	}
	return errors.Join(errs...)
}

func (l Limits) spec() messages.SpecLimits {
	return messages.SpecLimits{Epochs: l.Epochs, BatchSize: l.BatchSize, PageRows: l.PageRows, VocabSize: l.VocabSize,
		Filters: l.Filters, InValues: l.InValues, ClassWeights: l.ClassWeights, ScheduleBoundaries: l.ScheduleBoundaries,
		SweepVariants: l.SweepVariants}
}

func (l Limits) model() model.SizeLimits {
	return model.SizeLimits{Layers: l.Layers, Units: l.Units, Params: l.Params}
}

// reserveSource counts a submission against its source's jobs in flight until release is
// called: a 429 when the source already has as many as the limit.
func (c *Coordinator) reserveSource(source string) (release func(), err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.planning[source]
	for _, j := range c.order {
		if !j.rec.ended() && j.plan.Spec.Source == source {
			n++
		}
	}
	if n >= c.cfg.Limits.JobsPerSource {
		return nil, &apiError{status: http.StatusTooManyRequests, field: "source", retryAfter: retryBusy,
			msg: fmt.Sprintf("source %q has %d jobs in flight, this coordinator's limit: retry when one ends", source, n)}
	}
	c.planning[source]++
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.planning[source]--
	}, nil
}
