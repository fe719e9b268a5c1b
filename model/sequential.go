package model

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// Sequential is a stack of layers with a loss and an optimizer. It is not safe for
// concurrent use; its matrix products use every core on their own.
type Sequential struct {
	spec     Spec
	inputDim int
	layers   []layer
	params   []*param // every weight, layer by layer, in TF.js manifest order

	compiled bool
	comp     Compile
	loss     lossFn
	// metrics accumulates the pass under way (a TrainOnBatch call, a Fit epoch, an
	// evaluation); each pass resets it first.
	metrics *Metrics
	opt     *optimizer

	seed       int64
	dropoutRNG *rng
	shuffleRNG *rng

	lossGrad []float32
}

// Tensor is a named weight, row-major. A Dense kernel has shape [input, units].
type Tensor struct {
	Name   string
	Shape  []int
	Values []float32
}

// ErrNotCompiled is returned by training and evaluation before Compile.
var ErrNotCompiled = errors.New("model is not compiled: call Compile first")

// New builds the model for inputDim features (0 to take the spec's), initialised as Keras does
// (glorot_uniform kernels and zero biases unless the spec says otherwise) from seed. When
// c.Loss is empty and the spec carries a compile_config, that is used; when neither has a loss
// the model is built uncompiled (it can predict; Compile it to train).
func New(spec *Spec, inputDim int, c Compile, seed int64) (*Sequential, error) {
	if spec == nil {
		return nil, errors.New("nil spec")
	}
	s := cloneSpec(spec)
	if err := s.finish(); err != nil {
		return nil, err
	}
	switch {
	case inputDim < 0:
		return nil, fmt.Errorf("input width %d is negative", inputDim)
	case inputDim == 0 && s.InputDim == 0:
		return nil, errors.New("the input width is unknown: the spec has no input_dim and none was given")
	case inputDim == 0:
		inputDim = s.InputDim
	case s.InputDim != 0 && s.InputDim != inputDim:
		return nil, fmt.Errorf("the model expects %d input features, the data has %d", s.InputDim, inputDim)
	}
	m := &Sequential{spec: s, inputDim: inputDim, seed: seed}
	m.spec.InputDim = inputDim
	if err := m.build(); err != nil {
		return nil, err
	}
	init := newRNG(seed, streamInit)
	for _, l := range m.layers {
		if d, ok := l.(*denseLayer); ok {
			initTensor(initStream(init, d.ls.KernelInitializer), d.ls.KernelInitializer, glorotUniform, d.kernel.w, d.in, d.out)
			if d.bias != nil {
				initTensor(initStream(init, d.ls.BiasInitializer), d.ls.BiasInitializer, zerosInit, d.bias.w, d.out, d.out)
			}
		}
	}
	m.dropoutRNG = newRNG(seed, streamDropout)
	m.shuffleRNG = newRNG(seed, streamShuffle)
	if c.Loss == "" && s.Compile != nil {
		c = *s.Compile
	}
	if c.Loss != "" {
		if err := m.Compile(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func cloneSpec(s *Spec) Spec {
	c := *s
	c.Layers = append([]LayerSpec(nil), s.Layers...)
	if s.Compile != nil {
		cc := *s.Compile
		cc.Metrics = append([]string(nil), s.Compile.Metrics...)
		c.Compile = &cc
	}
	return c
}

// build creates the layers and their (zero) weights.
func (m *Sequential) build() error {
	dim := m.inputDim
	m.layers = m.layers[:0]
	m.params = m.params[:0]
	for i := range m.spec.Layers {
		ls := m.spec.Layers[i]
		var l layer
		switch ls.Type {
		case LayerDense:
			l = newDense(ls, dim)
		case LayerDropout:
			l = &dropoutLayer{ls: ls, dim: dim}
		case LayerBatchNorm:
			l = newBatchNorm(ls, dim)
		case LayerActivation, LayerLeakyReLU:
			l = newActivationLayer(ls, dim)
		default:
			return &SpecError{Index: i, Name: ls.Name, Reason: fmt.Sprintf("unsupported layer type %q", ls.Type)}
		}
		m.layers = append(m.layers, l)
		m.params = append(m.params, l.params()...)
		dim = l.outDim()
	}
	return nil
}

var (
	glorotUniform = &Initializer{Kind: "glorot_uniform"}
	zerosInit     = &Initializer{Kind: "zeros"}
)

// initTensor fills w (fanIn×fanOut values, or a vector) as a Keras initializer would.
func initTensor(r *rng, in, def *Initializer, w []float32, fanIn, fanOut int) {
	if in == nil {
		in = def
	}
	vs := func(scale float64, mode, dist string) {
		var n float64
		switch mode {
		case "fan_in":
			n = float64(fanIn)
		case "fan_out":
			n = float64(fanOut)
		default:
			n = float64(fanIn+fanOut) / 2
		}
		scale /= math.Max(1, n)
		switch dist {
		case "uniform":
			lim := math.Sqrt(3 * scale)
			for i := range w {
				w[i] = float32((2*r.Float64() - 1) * lim)
			}
		case "untruncated_normal":
			sd := math.Sqrt(scale)
			for i := range w {
				w[i] = float32(r.NormFloat64() * sd)
			}
		default: // truncated normal, corrected for the truncation's smaller variance
			sd := math.Sqrt(scale) / 0.87962566103423978
			for i := range w {
				w[i] = float32(r.truncNormal() * sd)
			}
		}
	}
	switch in.Kind {
	case "glorot_uniform":
		vs(1, "fan_avg", "uniform")
	case "glorot_normal":
		vs(1, "fan_avg", "truncated_normal")
	case "he_uniform":
		vs(2, "fan_in", "uniform")
	case "he_normal":
		vs(2, "fan_in", "truncated_normal")
	case "lecun_uniform":
		vs(1, "fan_in", "uniform")
	case "lecun_normal":
		vs(1, "fan_in", "truncated_normal")
	case "variance_scaling":
		vs(in.Scale, in.Mode, in.Distribution)
	case "zeros":
		clear(w)
	case "ones":
		fill(w, 1)
	case "constant":
		fill(w, float32(in.Value))
	case "random_uniform":
		for i := range w {
			w[i] = float32(in.Min + r.Float64()*(in.Max-in.Min))
		}
	case "random_normal":
		for i := range w {
			w[i] = float32(in.Mean + r.NormFloat64()*in.Stddev)
		}
	case "truncated_normal":
		for i := range w {
			w[i] = float32(in.Mean + r.truncNormal()*in.Stddev)
		}
	}
}

// InputDim is the number of input features.
func (m *Sequential) InputDim() int { return m.inputDim }

// OutputDim is the width of the model's output.
func (m *Sequential) OutputDim() int { return m.layers[len(m.layers)-1].outDim() }

// LabelDim is the width of one row of y for training: OutputDim, or 1 for sparse categorical
// crossentropy. It is 0 before Compile.
func (m *Sequential) LabelDim() int {
	if !m.compiled {
		return 0
	}
	return m.loss.labelDim(m.OutputDim())
}

// Spec returns a copy of the model's layer description (with the input width filled in).
func (m *Sequential) Spec() *Spec {
	s := cloneSpec(&m.spec)
	if m.compiled {
		c := m.comp
		s.Compile = &c
	}
	return &s
}

// CompileConfig returns the settings the model was compiled with (defaults filled in), and
// false when it is not compiled.
func (m *Sequential) CompileConfig() (Compile, bool) { return m.comp, m.compiled }

// Iterations is the number of optimizer updates applied so far.
func (m *Sequential) Iterations() int64 {
	if m.opt == nil {
		return 0
	}
	return m.opt.iterations
}

// LearningRate is the learning rate the next update will use.
func (m *Sequential) LearningRate() float64 {
	if m.opt == nil {
		return 0
	}
	return m.opt.learningRate()
}

// ParamCount returns the numbers of trainable and non-trainable weights.
func (m *Sequential) ParamCount() (trainable, nonTrainable int) {
	for _, p := range m.params {
		if p.trainable {
			trainable += len(p.w)
		} else {
			nonTrainable += len(p.w)
		}
	}
	return
}

// Summary describes the layers, their output widths and weight counts, like Keras's.
func (m *Sequential) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Model %q (input %d)\n", m.spec.Name, m.inputDim)
	for _, l := range m.layers {
		ls := l.spec()
		n := 0
		for _, p := range l.params() {
			n += len(p.w)
		}
		kind := ls.Type
		if ls.Type == LayerDense || ls.Type == LayerActivation {
			kind += "(" + ls.Activation + ")"
		}
		fmt.Fprintf(&b, "  %-24s %-28s out %-6d params %d\n", ls.Name, kind, l.outDim(), n)
	}
	t, nt := m.ParamCount()
	fmt.Fprintf(&b, "  trainable %d, non-trainable %d\n", t, nt)
	return b.String()
}

// Compile sets the loss, metrics and optimizer, and resets the optimizer's state.
func (m *Sequential) Compile(c Compile) error {
	c.Metrics = append([]string(nil), c.Metrics...)
	if c.Optimizer.Schedule != nil {
		s := *c.Optimizer.Schedule
		c.Optimizer.Schedule = &s
	}
	if err := c.normalize(); err != nil {
		return fmt.Errorf("compile: %w", err)
	}
	ms, err := NewMetrics(c, m.OutputDim())
	if err != nil {
		return fmt.Errorf("compile: %w", err)
	}
	m.comp = c
	m.loss = newLossFn(c.Loss, c.FromLogits, float32(c.HuberDelta))
	m.metrics = ms
	m.opt = newOptimizer(c.Optimizer)
	m.opt.initSlots(m.params)
	for _, l := range m.layers {
		if bn, ok := l.(*batchNormLayer); ok {
			bn.tfjsMovingAverage = c.Optimizer.TFJSForm
		}
	}
	m.compiled = true
	return nil
}

// Weights returns copies of every weight (trainable and moving statistics), in TF.js
// manifest order.
func (m *Sequential) Weights() []Tensor {
	out := make([]Tensor, len(m.params))
	for i, p := range m.params {
		out[i] = Tensor{Name: p.name, Shape: append([]int(nil), p.shape...), Values: append([]float32(nil), p.w...)}
	}
	return out
}

// SetWeights replaces weights by name. Every weight of the model must be given, with its
// shape, and no other.
func (m *Sequential) SetWeights(ws []Tensor) error {
	byName := make(map[string]Tensor, len(ws))
	for _, t := range ws {
		if _, dup := byName[t.Name]; dup {
			return fmt.Errorf("set weights: %q given twice", t.Name)
		}
		byName[t.Name] = t
	}
	for _, p := range m.params {
		t, ok := byName[p.name]
		if !ok {
			return fmt.Errorf("set weights: %q is missing", p.name)
		}
		if !sameShape(t.Shape, p.shape) || len(t.Values) != len(p.w) {
			return fmt.Errorf("set weights: %q has shape %v (%d values), want %v", p.name, t.Shape, len(t.Values), p.shape)
		}
	}
	if len(byName) != len(m.params) {
		known := make(map[string]bool, len(m.params))
		for _, p := range m.params {
			known[p.name] = true
		}
		for _, t := range ws {
			if !known[t.Name] {
				return fmt.Errorf("set weights: the model has no weight %q", t.Name)
			}
		}
	}
	// Everything checked: only now change the model.
	for _, p := range m.params {
		copy(p.w, byName[p.name].Values)
	}
	return nil
}

func sameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (m *Sequential) checkXY(x, y []float32, rows int, needY bool) error {
	if rows <= 0 {
		return fmt.Errorf("rows must be positive, got %d", rows)
	}
	if len(x) != rows*m.inputDim {
		return fmt.Errorf("x has %d values, want rows×input = %d×%d", len(x), rows, m.inputDim)
	}
	if !needY {
		return nil
	}
	if !m.compiled {
		return ErrNotCompiled
	}
	ld := m.LabelDim()
	if len(y) != rows*ld {
		return fmt.Errorf("y has %d values, want rows×%d = %d", len(y), ld, rows*ld)
	}
	return m.loss.checkLabels(y, rows, m.OutputDim())
}

// forward runs every layer and returns the output (owned by the last layer).
func (m *Sequential) forward(x []float32, rows int, training bool) []float32 {
	h := x
	for _, l := range m.layers {
		h = l.forward(h, rows, training, m.dropoutRNG)
	}
	return h
}

// trainStep runs one forward/backward pass and optimizer update, returning the batch loss
// (before the update) and adding the batch to the metrics.
func (m *Sequential) trainStep(x, y, w []float32, rows int) (float64, error) {
	if err := m.checkXY(x, y, rows, true); err != nil {
		return 0, err
	}
	if err := checkSampleWeights(w, rows); err != nil {
		return 0, err
	}
	loss := m.gradients(x, y, w, rows)
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		return loss, fmt.Errorf("loss is %v at iteration %d", loss, m.opt.iterations)
	}
	m.opt.apply(m.params)
	m.applyConstraints()
	return loss, nil
}

// gradients runs the training-mode forward pass and backpropagation, leaving dL/dw in every
// trainable parameter's gradient buffer, and returns the loss. w, if not nil, weighs each
// row's loss (sample_weight.go).
func (m *Sequential) gradients(x, y, w []float32, rows int) float64 {
	if m.regularized() {
		return m.regularizedGradients(x, y, w, rows)
	}
	out := m.forward(x, rows, true)
	loss := m.lossAndGrad(out, y, w, rows)
	dy := m.lossGrad
	for i := len(m.layers) - 1; i >= 0; i-- {
		dy = m.layers[i].backward(dy, rows, i > 0)
	}
	return loss
}

// TrainOnBatch runs one optimizer step on a batch: x is rows×InputDim row-major, y is
// rows×LabelDim. It returns the batch's loss and metrics computed before the update, as
// Keras's train_on_batch does.
func (m *Sequential) TrainOnBatch(x, y []float32, rows int) (map[string]float64, error) {
	if !m.compiled {
		return nil, ErrNotCompiled
	}
	m.metrics.Reset()
	loss, err := m.trainStep(x, y, nil, rows)
	if err != nil {
		return nil, fmt.Errorf("train on batch: %w", err)
	}
	return m.results(loss), nil
}

// results is the pass's loss and metrics.
func (m *Sequential) results(loss float64) map[string]float64 {
	r := m.metrics.Results()
	r["loss"] = loss
	return r
}

// predictChunk bounds the rows run through the layers at once by Predict and Evaluate.
const predictChunk = 4096

// Evaluate computes the loss and metrics in inference mode (no dropout, moving statistics
// for batch normalisation), averaged over all rows.
func (m *Sequential) Evaluate(x, y []float32, rows int) (map[string]float64, error) {
	if !m.compiled {
		return nil, ErrNotCompiled
	}
	loss, err := m.evaluate(x, y, nil, rows)
	if err != nil {
		return nil, fmt.Errorf("evaluate: %w", err)
	}
	return m.results(loss), nil
}

// evaluate returns the mean loss, leaving the metrics of the pass in m.metrics; w, if not
// nil, weighs each row's loss (Σ w·loss / rows, as Keras's evaluate with sample_weight).
func (m *Sequential) evaluate(x, y, w []float32, rows int) (float64, error) {
	if err := m.checkXY(x, y, rows, true); err != nil {
		return 0, err
	}
	if err := checkSampleWeights(w, rows); err != nil {
		return 0, err
	}
	m.metrics.Reset()
	od, ld, in := m.OutputDim(), m.LabelDim(), m.inputDim
	var total float64
	for r0 := 0; r0 < rows; r0 += predictChunk {
		n := min(predictChunk, rows-r0)
		out := m.forward(x[r0*in:(r0+n)*in], n, false)
		yb := y[r0*ld : (r0+n)*ld]
		if w == nil {
			total += m.loss.eval(out, yb, n, od, nil) * float64(n)
		} else {
			total += m.weightedLossSum(out, yb, w[r0:r0+n], n)
		}
		m.metrics.Update(out, yb, n)
	}
	if m.regularized() {
		// Keras's evaluate reports the loss with the regularization penalties.
		return total/float64(rows) + m.evalPenalty(x, rows), nil
	}
	return total / float64(rows), nil
}

// Predict returns the model's outputs (rows×OutputDim) in inference mode.
func (m *Sequential) Predict(x []float32, rows int) ([]float32, error) {
	if err := m.checkXY(x, nil, rows, false); err != nil {
		return nil, fmt.Errorf("predict: %w", err)
	}
	od, in := m.OutputDim(), m.inputDim
	res := make([]float32, rows*od)
	for r0 := 0; r0 < rows; r0 += predictChunk {
		n := min(predictChunk, rows-r0)
		out := m.forward(x[r0*in:(r0+n)*in], n, false)
		copy(res[r0*od:(r0+n)*od], out)
	}
	return res, nil
}
