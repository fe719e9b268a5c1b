package trainer

import (
	"fmt"
	"slices"
	"sync"

	"pgtrain/messages"
)

// Model is what the trainer needs from an engine; the pure-Go engine and the TensorFlow
// backend both implement it. x and y are row-major, rows rows of plan.InputDim and
// plan.LabelDim floats; the maps hold "loss" and one entry per compiled metric.
type Model interface {
	// TrainOnBatch takes one optimizer step; the loss it reports is the one before the step.
	TrainOnBatch(x, y []float32, rows int) (map[string]float64, error)
	Evaluate(x, y []float32, rows int) (map[string]float64, error)
	SaveTFJS(dir string) error
	// MarshalCheckpoint and UnmarshalCheckpoint carry everything that decides later steps
	// (weights, optimizer slots, step counters, random state), so that a resumed job ends
	// with the same weights as one that was never stopped.
	MarshalCheckpoint() ([]byte, error)
	UnmarshalCheckpoint([]byte) error
}

// BackendFunc builds a freshly initialised model for a plan.
type BackendFunc func(plan *messages.Plan) (Model, error)

var backends = struct {
	sync.RWMutex
	m map[string]BackendFunc
}{m: map[string]BackendFunc{}}

// RegisterBackend makes a model engine available under name (plan.Spec.Backend). "go", the
// pure-Go engine, is always registered; the TensorFlow backend registers itself from a
// build-tagged package. Registering a name twice replaces the first.
func RegisterBackend(name string, build func(plan *messages.Plan) (Model, error)) {
	backends.Lock()
	defer backends.Unlock()
	backends.m[name] = build
}

// Backends lists the registered backend names, sorted.
func Backends() []string {
	backends.RLock()
	defer backends.RUnlock()
	names := make([]string, 0, len(backends.m))
	for n := range backends.m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// LookupBackend returns the builder registered under name, so that a caller can wrap an
// engine (a benchmark timing the first step, say) and register the wrapper in its place.
func LookupBackend(name string) (BackendFunc, bool) {
	backends.RLock()
	defer backends.RUnlock()
	build, ok := backends.m[name]
	return build, ok
}

// taggedBackends are the backends that only binaries built with a build tag have; asking a
// binary without the tag for one says how to get it.
var taggedBackends = map[string]string{
	"tensorflow": "built without the tensorflow tag; see README (TensorFlow backend)",
}

// lookup returns the builder of a registered backend, or an ErrNoBackend error that says why
// the binary lacks it.
func lookup(name string) (BackendFunc, error) {
	if build, ok := LookupBackend(name); ok {
		return build, nil
	}
	if hint, ok := taggedBackends[name]; ok {
		return nil, fmt.Errorf("backend %q: this binary was %s: %w", name, hint, ErrNoBackend)
	}
	return nil, fmt.Errorf("backend %q is not built into this binary (have %v): %w", name, Backends(), ErrNoBackend)
}

// CheckBackend returns nil when this binary has the named backend, and otherwise an
// ErrNoBackend error that says why not (for a tagged backend: how to get it).
func CheckBackend(name string) error {
	_, err := lookup(name)
	return err
}

// buildModel picks the backend: override when set (the trainer's Config.Backend), else the
// plan's ("go" when the spec leaves it empty).
func buildModel(plan *messages.Plan, override string) (Model, error) {
	name := override
	if name == "" {
		name = plan.Spec.Backend
	}
	if name == "" {
		name = "go"
	}
	build, err := lookup(name)
	if err != nil {
		return nil, err
	}
	m, err := build(plan)
	if err != nil {
		return nil, fmt.Errorf("building the %s model: %w", name, err)
	}
	return m, nil
}
