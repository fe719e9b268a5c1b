//go:build tensorflow

package tensorflow

import (
	"fmt"
	"math"
	"os"
	"sync"

	tf "github.com/wamuir/graft/tensorflow"

	"pgtrain/model"
	"pgtrain/trainer"
)

// The trainer's model interface; deleting one of its methods here breaks the build.
var _ trainer.Model = (*Model)(nil)

// chunkRows bounds the rows run through the graph at once by Evaluate and Predict, as the
// Go engine's own chunking does.
const chunkRows = 4096

// Model is a Sequential model on a TensorFlow graph and session. It is not safe for
// concurrent use. Close releases the session; a Model that is dropped without Close is
// released when the garbage collector finds it.
type Model struct {
	// ref is the Go engine's model of the same architecture: it supplied the initial
	// weights, and it writes the TF.js files from the variables' values.
	ref       *model.Sequential
	spec      *model.Spec
	inputDim  int
	outputDim int
	labelDim  int
	comp      model.Compile
	compiled  bool
	// metrics accumulates the pass under way (a TrainOnBatch call, an Evaluate); each pass
	// resets it first.
	metrics *model.Metrics
	vars    []varSpec
	slots   []string
	seed    int64

	// iterations counts the optimizer updates applied (Keras's optimizer.iterations).
	iterations int64
	dropout    *model.DropoutStream

	g    *graph
	sess *tf.Session
}

// New builds a model from a spec for inputDim features (0 to take the spec's), compiled
// with c, its weights initialised exactly as model.New initialises them from seed, so that
// a seed gives the same initial model on both backends. The dropout masks come from the
// Go engine's stream for the same seed.
func New(spec *model.Spec, inputDim int, c model.Compile, seed int64) (*Model, error) {
	ref, err := model.New(spec, inputDim, c, seed)
	if err != nil {
		return nil, err
	}
	return fromReference(ref, seed)
}

// FromSequential builds a TensorFlow model with the architecture, compile settings and
// current weights of a Go engine model (its optimizer state is not carried over). m is not
// changed.
func FromSequential(m *model.Sequential, seed int64) (*Model, error) {
	ref, err := model.New(m.Spec(), m.InputDim(), model.Compile{}, seed)
	if err != nil {
		return nil, err
	}
	if err := ref.SetWeights(m.Weights()); err != nil {
		return nil, err
	}
	return fromReference(ref, seed)
}

// LoadTFJS reads a TF.js Layers model (written by either backend's SaveTFJS, or by
// TensorFlow.js) onto TensorFlow. With a loss in c the model is compiled for training;
// otherwise it only predicts.
func LoadTFJS(dir string, c model.Compile, seed int64) (*Model, error) {
	ref, err := model.LoadTFJS(dir)
	if err != nil {
		return nil, err
	}
	if c.Loss != "" {
		if err := ref.Compile(c); err != nil {
			return nil, err
		}
	}
	return fromReference(ref, seed)
}

// fromReference builds the graph for ref's architecture and compile settings and loads
// ref's weights into it. ref becomes the model's own.
func fromReference(ref *model.Sequential, seed int64) (*Model, error) {
	m := &Model{
		ref:       ref,
		spec:      ref.Spec(),
		inputDim:  ref.InputDim(),
		outputDim: ref.OutputDim(),
		labelDim:  ref.LabelDim(),
		seed:      seed,
		dropout:   model.NewDropoutStream(seed),
	}
	m.comp, m.compiled = ref.CompileConfig()
	var comp *model.Compile
	if m.compiled {
		if err := checkSupported(m.comp); err != nil {
			return nil, err
		}
		ms, err := newMetrics(ref)
		if err != nil {
			return nil, err
		}
		m.metrics = ms
		m.slots = slotNames(m.comp.Optimizer)
		comp = &m.comp
	}
	vars, err := layout(m.spec, m.inputDim)
	if err != nil {
		return nil, err
	}
	initial := ref.Weights()
	if err := checkLayout(vars, initial); err != nil {
		return nil, err
	}
	m.vars = vars
	tg, g, err := buildGraph(m.spec, m.inputDim, m.outputDim, m.labelDim, vars, m.slots, comp)
	if err != nil {
		return nil, err
	}
	m.g = g
	requireDeterminism()
	if m.sess, err = tf.NewSession(tg, nil); err != nil {
		return nil, fmt.Errorf("starting a TensorFlow session (libtensorflow %s): %w", tf.Version(), err)
	}
	values := make([][]float32, 0, len(g.resources))
	for i, w := range g.weights {
		values = append(values, initial[i].Values)
		for range w.slots {
			values = append(values, make([]float32, vars[i].size()))
		}
	}
	if err := m.assign(g.resources, values); err != nil {
		m.sess.Close()
		return nil, fmt.Errorf("initialising the variables: %w", err)
	}
	return m, nil
}

var determinism sync.Once

// requireDeterminism asks TensorFlow for deterministic kernels (TF_DETERMINISTIC_OPS=1,
// read once by the library when the first kernel needs it) unless the operator chose
// otherwise: pgtrain's weights are to be a function of the data, the spec and the seed.
func requireDeterminism() {
	determinism.Do(func() {
		if _, ok := os.LookupEnv("TF_DETERMINISTIC_OPS"); !ok {
			_ = os.Setenv("TF_DETERMINISTIC_OPS", "1")
		}
	})
}

// Close releases the TensorFlow session.
func (m *Model) Close() error { return m.sess.Close() }

// InputDim is the number of input features.
func (m *Model) InputDim() int { return m.inputDim }

// OutputDim is the width of the model's output.
func (m *Model) OutputDim() int { return m.outputDim }

// LabelDim is the width of a label row: OutputDim, or 1 for sparse categorical
// crossentropy; 0 for a model that is not compiled.
func (m *Model) LabelDim() int { return m.labelDim }

// Iterations is the number of optimizer updates applied so far.
func (m *Model) Iterations() int64 { return m.iterations }

func (m *Model) checkXY(x, y []float32, rows int) error {
	if !m.compiled {
		return model.ErrNotCompiled
	}
	if rows <= 0 {
		return fmt.Errorf("rows must be positive, got %d", rows)
	}
	if len(x) != rows*m.inputDim {
		return fmt.Errorf("x has %d values, want rows×input = %d×%d", len(x), rows, m.inputDim)
	}
	if len(y) != rows*m.labelDim {
		return fmt.Errorf("y has %d values, want rows×%d = %d", len(y), m.labelDim, rows*m.labelDim)
	}
	if m.comp.Loss == model.LossSparseCategoricalCE {
		// TensorFlow's one-hot encoding would turn a label out of range into a row of zeros.
		return model.CheckSparseLabels(y, m.outputDim)
	}
	return nil
}

// TrainOnBatch runs one optimizer step on a batch (x rows×InputDim, y rows×LabelDim,
// row-major) and returns the batch's loss and metrics computed before the update, as
// Keras's train_on_batch does.
func (m *Model) TrainOnBatch(x, y []float32, rows int) (map[string]float64, error) {
	if err := m.checkXY(x, y, rows); err != nil {
		return nil, fmt.Errorf("train on batch: %w", err)
	}
	feeds, err := m.feedXY(x, y, rows)
	if err != nil {
		return nil, fmt.Errorf("train on batch: %w", err)
	}
	for _, d := range m.g.dropout {
		mask := make([]float32, rows*d.dim)
		m.dropout.Fill(mask, d.rate)
		if feeds[d.feed], err = floatTensor(mask, rows, d.dim); err != nil {
			return nil, fmt.Errorf("train on batch: dropout mask: %w", err)
		}
	}
	if o := m.comp.Optimizer; o.Name == model.OptAdam || o.Name == model.OptAdamW {
		// β^t for the coming step t, rounded as the Go engine rounds it.
		t := float64(m.iterations + 1)
		b1 := float32(math.Pow(float64(float32(o.Beta1)), t))
		b2 := float32(math.Pow(float64(float32(o.Beta2)), t))
		if feeds[m.g.beta1Power], err = scalarTensor(b1); err != nil {
			return nil, err
		}
		if feeds[m.g.beta2Power], err = scalarTensor(b2); err != nil {
			return nil, err
		}
	}
	fetches := []tf.Output{m.g.lossTrain}
	if m.metrics.Len() > 0 {
		fetches = append(fetches, m.g.predTrain)
	}
	out, err := m.sess.Run(feeds, fetches, []*tf.Operation{m.g.step})
	if err != nil {
		return nil, fmt.Errorf("train on batch: %w", err)
	}
	// The update is part of the same run as the loss, so it has been applied even when the
	// loss turns out not to be finite; the job fails on that error either way.
	m.iterations++
	loss, err := scalarOf(out[0])
	if err != nil {
		return nil, fmt.Errorf("train on batch: %w", err)
	}
	if l := float64(loss); math.IsNaN(l) || math.IsInf(l, 0) {
		return nil, fmt.Errorf("train on batch: loss is %v at iteration %d", l, m.iterations-1)
	}
	m.metrics.Reset()
	if m.metrics.Len() > 0 {
		pred, err := floatsOf(out[1])
		if err != nil {
			return nil, fmt.Errorf("train on batch: %w", err)
		}
		m.metrics.Update(pred, y, rows)
	}
	res := m.metrics.Results()
	res["loss"] = float64(loss)
	return res, nil
}

func (m *Model) feedXY(x, y []float32, rows int) (map[tf.Output]*tf.Tensor, error) {
	xt, err := floatTensor(x, rows, m.inputDim)
	if err != nil {
		return nil, fmt.Errorf("x: %w", err)
	}
	feeds := map[tf.Output]*tf.Tensor{m.g.x: xt}
	if y != nil {
		yt, err := floatTensor(y, rows, m.labelDim)
		if err != nil {
			return nil, fmt.Errorf("y: %w", err)
		}
		feeds[m.g.y] = yt
	}
	return feeds, nil
}

// Evaluate computes the loss and metrics in inference mode (no dropout, moving statistics
// in batch normalisation), averaged over all rows.
func (m *Model) Evaluate(x, y []float32, rows int) (map[string]float64, error) {
	if err := m.checkXY(x, y, rows); err != nil {
		return nil, fmt.Errorf("evaluate: %w", err)
	}
	m.metrics.Reset()
	var total float64
	for r0 := 0; r0 < rows; r0 += chunkRows {
		n := min(chunkRows, rows-r0)
		xb, yb := x[r0*m.inputDim:(r0+n)*m.inputDim], y[r0*m.labelDim:(r0+n)*m.labelDim]
		feeds, err := m.feedXY(xb, yb, n)
		if err != nil {
			return nil, fmt.Errorf("evaluate: %w", err)
		}
		fetches := []tf.Output{m.g.lossEval}
		if m.metrics.Len() > 0 {
			fetches = append(fetches, m.g.predEval)
		}
		out, err := m.sess.Run(feeds, fetches, nil)
		if err != nil {
			return nil, fmt.Errorf("evaluate: %w", err)
		}
		loss, err := scalarOf(out[0])
		if err != nil {
			return nil, fmt.Errorf("evaluate: %w", err)
		}
		total += float64(loss) * float64(n)
		if m.metrics.Len() > 0 {
			pred, err := floatsOf(out[1])
			if err != nil {
				return nil, fmt.Errorf("evaluate: %w", err)
			}
			m.metrics.Update(pred, yb, n)
		}
	}
	res := m.metrics.Results()
	res["loss"] = total / float64(rows)
	return res, nil
}

// Predict returns the model's outputs (rows×OutputDim) in inference mode.
func (m *Model) Predict(x []float32, rows int) ([]float32, error) {
	if rows <= 0 || len(x) != rows*m.inputDim {
		return nil, fmt.Errorf("predict: x has %d values for %d rows of %d features", len(x), rows, m.inputDim)
	}
	res := make([]float32, 0, rows*m.outputDim)
	for r0 := 0; r0 < rows; r0 += chunkRows {
		n := min(chunkRows, rows-r0)
		feeds, err := m.feedXY(x[r0*m.inputDim:(r0+n)*m.inputDim], nil, n)
		if err != nil {
			return nil, fmt.Errorf("predict: %w", err)
		}
		out, err := m.sess.Run(feeds, []tf.Output{m.g.predEval}, nil)
		if err != nil {
			return nil, fmt.Errorf("predict: %w", err)
		}
		pred, err := floatsOf(out[0])
		if err != nil {
			return nil, fmt.Errorf("predict: %w", err)
		}
		res = append(res, pred...)
	}
	return res, nil
}

// Weights reads every weight (moving statistics included) from the variables, in TF.js
// manifest order, named and shaped as the Go engine's Weights.
func (m *Model) Weights() ([]model.Tensor, error) {
	rs := make([]*resource, len(m.g.weights))
	for i, w := range m.g.weights {
		rs[i] = w.resource
	}
	values, err := m.read(rs)
	if err != nil {
		return nil, fmt.Errorf("reading the weights: %w", err)
	}
	out := make([]model.Tensor, len(values))
	for i, v := range values {
		out[i] = model.Tensor{Name: m.vars[i].Name, Shape: append([]int(nil), m.vars[i].Shape...), Values: v}
	}
	return out, nil
}

// SetWeights replaces the weights by name: every weight of the model, with its shape, and
// no other (the Go engine's rule). Optimizer state is kept.
func (m *Model) SetWeights(ws []model.Tensor) error {
	if err := m.ref.SetWeights(ws); err != nil {
		return err
	}
	byName := make(map[string][]float32, len(ws))
	for _, t := range ws {
		byName[t.Name] = t.Values
	}
	rs := make([]*resource, len(m.g.weights))
	values := make([][]float32, len(m.g.weights))
	for i, w := range m.g.weights {
		rs[i], values[i] = w.resource, byName[w.spec.Name]
	}
	if err := m.assign(rs, values); err != nil {
		return fmt.Errorf("set weights: %w", err)
	}
	return nil
}

// SaveTFJS writes dir/model.json and its weight shard in the TF.js Layers format, with the
// Go engine's exporter: the files are those the go backend writes for the same weights.
func (m *Model) SaveTFJS(dir string) error {
	ws, err := m.Weights()
	if err != nil {
		return fmt.Errorf("save tfjs: %w", err)
	}
	if err := m.ref.SetWeights(ws); err != nil {
		return fmt.Errorf("save tfjs: %w", err)
	}
	return m.ref.SaveTFJS(dir)
}

// header describes the checkpoint this model writes, tensor values aside.
func (m *Model) header() *stateHeader {
	h := &stateHeader{InputDim: m.inputDim, Seed: m.seed, Iterations: m.iterations, Slots: m.slots}
	if m.compiled {
		h.Optimizer = m.comp.Optimizer.Name
	}
	for _, l := range m.spec.Layers {
		h.Layers = append(h.Layers, stateLayer{Type: l.Type, Name: l.Name, Units: l.Units})
	}
	for i, w := range m.g.weights {
		v := m.vars[i]
		h.Tensors = append(h.Tensors, stateTensor{Name: v.Name, Slot: 0, Shape: v.Shape})
		for j := range w.slots {
			h.Tensors = append(h.Tensors, stateTensor{Name: v.Name, Slot: j + 1, Shape: v.Shape})
		}
	}
	return h
}

// MarshalCheckpoint captures everything later steps depend on: every variable (weights,
// moving statistics, optimizer slots), the step count and the dropout stream.
func (m *Model) MarshalCheckpoint() ([]byte, error) {
	h := m.header()
	var err error
	if h.Dropout, err = m.dropout.MarshalBinary(); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	values, err := m.read(m.g.resources)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	return encodeState(h, values)
}

// UnmarshalCheckpoint restores a checkpoint written by MarshalCheckpoint of a model of the
// same architecture and optimizer. A checkpoint that does not fit leaves the model as it
// was.
func (m *Model) UnmarshalCheckpoint(b []byte) error {
	h, values, err := decodeState(b)
	if err != nil {
		return err
	}
	if err := h.matches(m.header()); err != nil {
		return err
	}
	stream := model.NewDropoutStream(h.Seed)
	if err := stream.UnmarshalBinary(h.Dropout); err != nil {
		return fmt.Errorf("checkpoint: dropout stream: %w", err)
	}
	if err := m.assign(m.g.resources, values); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	m.iterations, m.seed, m.dropout = h.Iterations, h.Seed, stream
	return nil
}

// read fetches the values of some variables in one run.
func (m *Model) read(rs []*resource) ([][]float32, error) {
	fetches := make([]tf.Output, len(rs))
	for i, r := range rs {
		fetches[i] = r.read
	}
	out, err := m.sess.Run(nil, fetches, nil)
	if err != nil {
		return nil, err
	}
	values := make([][]float32, len(out))
	for i, t := range out {
		if values[i], err = floatsOf(t); err != nil {
			return nil, err
		}
	}
	return values, nil
}

// assign sets some variables in one run; values[i] holds rs[i]'s values, row-major.
func (m *Model) assign(rs []*resource, values [][]float32) error {
	feeds := make(map[tf.Output]*tf.Tensor, len(rs))
	targets := make([]*tf.Operation, len(rs))
	for i, r := range rs {
		t, err := floatTensor(values[i], r.shape...)
		if err != nil {
			return err
		}
		feeds[r.in] = t
		targets[i] = r.assign
	}
	_, err := m.sess.Run(feeds, nil, targets)
	return err
}
