//go:build tensorflow

package tensorflow

import (
	"fmt"
	"math"
	"sync/atomic"

	tf "github.com/wamuir/graft/tensorflow"
	"github.com/wamuir/graft/tensorflow/op"

	"pgtrain/model"
)

// lossEpsilon is Keras's backend epsilon, the clip of probabilities in the crossentropies.
const lossEpsilon = 1e-7

// resource is one resource variable with the operations that read it and set it.
type resource struct {
	shape  []int
	handle tf.Output
	read   tf.Output
	in     tf.Output // placeholder that assign writes
	assign *tf.Operation
}

// weightVar is a model weight and its optimizer slots.
type weightVar struct {
	*resource
	spec  varSpec
	slots []*resource
}

// dropoutFeed is the mask placeholder of one Dropout layer in the training pass.
type dropoutFeed struct {
	feed tf.Output
	dim  int
	rate float64
}

// graph holds the handles of a built model graph.
type graph struct {
	x, y tf.Output
	// dropout holds the training pass's mask inputs, in layer order (the order the masks
	// are drawn in).
	dropout   []dropoutFeed
	predEval  tf.Output
	lossEval  tf.Output
	predTrain tf.Output
	lossTrain tf.Output
	// step applies one optimizer update and the moving-statistics updates.
	step *tf.Operation
	// beta1Power and beta2Power are β^t of the coming Adam step, fed with each batch.
	beta1Power, beta2Power tf.Output
	weights                []*weightVar
	// resources are every weight followed by its slots: the checkpoint's order.
	resources []*resource
}

// graphSeq makes variable names unique in the process, so that two models never share a
// variable whatever TensorFlow's resource containers are.
var graphSeq atomic.Uint64

// builder lays out one model as a graph. Each operation gets a scope of its own: graft names
// an operation after its type within its scope, and names must be unique.
type builder struct {
	root     *op.Scope
	prefix   string
	spec     *model.Spec
	inputDim int
	comp     *model.Compile // nil for a model that only predicts
	g        *graph
	byName   map[string]*weightVar
}

// buildGraph builds the inference pass and, for a compiled model, the loss, the gradients
// and the training step.
func buildGraph(spec *model.Spec, inputDim, outputDim, labelDim int, vars []varSpec, slots []string, comp *model.Compile) (*tf.Graph, *graph, error) {
	b := &builder{
		root:     op.NewScope(),
		prefix:   fmt.Sprintf("pgtrain%d", graphSeq.Add(1)),
		spec:     spec,
		inputDim: inputDim,
		comp:     comp,
		g:        &graph{},
		byName:   map[string]*weightVar{},
	}
	for _, v := range vars {
		w := &weightVar{resource: b.variable(v.Name, v.Shape), spec: v}
		b.g.resources = append(b.g.resources, w.resource)
		if v.Trainable {
			for _, s := range slots {
				r := b.variable(v.Name+"/"+s, v.Shape)
				w.slots = append(w.slots, r)
				b.g.resources = append(b.g.resources, r)
			}
		}
		b.g.weights = append(b.g.weights, w)
		b.byName[v.Name] = w
	}
	s := b.root
	b.g.x = op.Placeholder(s.SubScope("x"), tf.Float, op.PlaceholderShape(tf.MakeShape(-1, int64(inputDim))))
	pred, _, err := b.forward(s.SubScope("inference"), b.g.x, false)
	if err != nil {
		return nil, nil, err
	}
	b.g.predEval = pred
	if comp != nil {
		b.g.y = op.Placeholder(s.SubScope("y"), tf.Float, op.PlaceholderShape(tf.MakeShape(-1, int64(labelDim))))
		b.g.lossEval = b.loss(s.SubScope("inference_loss"), pred, outputDim)
		predTrain, updates, err := b.forward(s.SubScope("training"), b.g.x, true)
		if err != nil {
			return nil, nil, err
		}
		b.g.predTrain = predTrain
		b.g.lossTrain = b.loss(s.SubScope("training_loss"), predTrain, outputDim)
		if err := b.trainStep(updates); err != nil {
			return nil, nil, err
		}
	}
	tg, err := b.root.Finalize()
	if err != nil {
		return nil, nil, fmt.Errorf("building the TensorFlow graph: %w", err)
	}
	return tg, b.g, nil
}

// variable adds a float32 resource variable with its read and assign operations.
func (b *builder) variable(name string, shape []int) *resource {
	s := b.root.SubScope("var")
	dims := make([]int64, len(shape))
	for i, d := range shape {
		dims[i] = int64(d)
	}
	r := &resource{shape: shape}
	r.handle = op.VarHandleOp(s.SubScope("handle"), tf.Float, tf.MakeShape(dims...),
		op.VarHandleOpSharedName(b.prefix+"/"+name), op.VarHandleOpDebugName(name))
	r.read = op.ReadVariableOp(s.SubScope("read"), r.handle, tf.Float)
	r.in = op.Placeholder(s.SubScope("value"), tf.Float, op.PlaceholderShape(tf.MakeShape(dims...)))
	r.assign = op.AssignVariableOp(s.SubScope("assign"), r.handle, r.in)
	return r
}

func constant(s *op.Scope, v float32) tf.Output { return op.Const(s.SubScope("const"), v) }

// forward adds one pass through the layers. The training pass normalises with batch
// statistics (returning the moving-average updates) and applies dropout masks fed from Go;
// the inference pass uses the moving statistics and no dropout.
func (b *builder) forward(s *op.Scope, x tf.Output, training bool) (tf.Output, []*tf.Operation, error) {
	h, dim := x, b.inputDim
	var updates []*tf.Operation
	for i, l := range b.spec.Layers {
		// Scopes are named by position: layer names are the user's and need not be valid
		// TensorFlow names.
		ls := s.SubScope(fmt.Sprintf("layer%d", i))
		var err error
		switch l.Type {
		case model.LayerDense:
			h = op.MatMul(ls.SubScope("matmul"), h, b.byName[l.Name+"/kernel"].read)
			if l.UseBias {
				h = op.BiasAdd(ls.SubScope("bias"), h, b.byName[l.Name+"/bias"].read)
			}
			if h, err = activation(ls.SubScope("activation"), h, l.Activation, l.Alpha); err != nil {
				return tf.Output{}, nil, fmt.Errorf("layers[%d] %q: %w", i, l.Name, err)
			}
			dim = l.Units
		case model.LayerDropout:
			if training && l.Rate > 0 {
				// x/(1 - rate) where the mask keeps, 0 elsewhere: the Go engine's arithmetic.
				mask := op.Placeholder(ls.SubScope("mask"), tf.Float, op.PlaceholderShape(tf.MakeShape(-1, int64(dim))))
				b.g.dropout = append(b.g.dropout, dropoutFeed{feed: mask, dim: dim, rate: l.Rate})
				scaled := op.RealDiv(ls.SubScope("scale"), h, constant(ls, float32(1-l.Rate)))
				h = op.Mul(ls.SubScope("dropout"), scaled, mask)
			}
		case model.LayerBatchNorm:
			var upd []*tf.Operation
			h, upd = b.batchNorm(ls, h, l, training)
			updates = append(updates, upd...)
		case model.LayerActivation:
			if h, err = activation(ls.SubScope("activation"), h, l.Activation, l.Alpha); err != nil {
				return tf.Output{}, nil, fmt.Errorf("layers[%d] %q: %w", i, l.Name, err)
			}
		case model.LayerLeakyReLU:
			h = op.LeakyRelu(ls.SubScope("leaky_relu"), h, op.LeakyReluAlpha(float32(l.Alpha)))
		default:
			return tf.Output{}, nil, fmt.Errorf("layers[%d] %q: layer type %q: %w", i, l.Name, l.Type, ErrUnsupported)
		}
	}
	return h, updates, nil
}

// activation applies a canonical activation (model.Act*) to z.
func activation(s *op.Scope, z tf.Output, name string, alpha float64) (tf.Output, error) {
	switch name {
	case model.ActLinear, "":
		return z, nil
	case model.ActReLU:
		return op.Relu(s, z), nil
	case model.ActSigmoid:
		return op.Sigmoid(s, z), nil
	case model.ActTanh:
		return op.Tanh(s, z), nil
	case model.ActSoftmax:
		return op.Softmax(s, z), nil
	case model.ActELU:
		return op.Elu(s, z), nil
	case model.ActSELU:
		return op.Selu(s, z), nil
	case model.ActGELU:
		// The exact form, 0.5·z·(1 + erf(z/√2)), as Keras's default and the Go engine.
		e := op.Erf(s.SubScope("erf"), op.RealDiv(s.SubScope("scaled"), z, constant(s, math.Sqrt2)))
		half := op.Mul(s.SubScope("half"), z, constant(s, 0.5))
		return op.Mul(s.SubScope("gelu"), half, op.AddV2(s.SubScope("one_plus"), e, constant(s, 1))), nil
	case model.ActSwish:
		return op.Mul(s.SubScope("swish"), z, op.Sigmoid(s.SubScope("sigmoid"), z)), nil
	case model.ActLeakyReLU:
		return op.LeakyRelu(s, z, op.LeakyReluAlpha(float32(alpha))), nil
	}
	return tf.Output{}, fmt.Errorf("activation %q: %w", name, ErrUnsupported)
}

// batchNorm normalises each feature: with the batch's mean and biased variance while
// training (updating the moving averages as moving·momentum + batch·(1 − momentum)), with
// the moving statistics at inference.
func (b *builder) batchNorm(s *op.Scope, h tf.Output, l model.LayerSpec, training bool) (tf.Output, []*tf.Operation) {
	mm, mv := b.byName[l.Name+"/moving_mean"], b.byName[l.Name+"/moving_variance"]
	eps := constant(s, float32(l.Epsilon))
	var norm tf.Output
	var updates []*tf.Operation
	if training {
		axis0 := op.Const(s.SubScope("axis"), []int32{0})
		mean := op.Mean(s.SubScope("mean"), h, axis0)
		centered := op.Sub(s.SubScope("centered"), h, mean)
		variance := op.Mean(s.SubScope("variance"), op.Square(s.SubScope("square"), centered), axis0)
		invStd := op.Rsqrt(s.SubScope("inv_std"), op.AddV2(s.SubScope("var_eps"), variance, eps))
		norm = op.Mul(s.SubScope("normalized"), centered, invStd)
		momentum := constant(s, float32(l.Momentum))
		rest := constant(s, float32(1-l.Momentum))
		for _, u := range []struct {
			v     *weightVar
			batch tf.Output
		}{{mm, mean}, {mv, variance}} {
			moving := op.AddV2(s.SubScope("moving"),
				op.Mul(s.SubScope("decayed"), u.v.read, momentum),
				op.Mul(s.SubScope("batch"), u.batch, rest))
			updates = append(updates, op.AssignVariableOp(s.SubScope("update"), u.v.handle, moving))
		}
	} else {
		invStd := op.Rsqrt(s.SubScope("inv_std"), op.AddV2(s.SubScope("var_eps"), mv.read, eps))
		norm = op.Mul(s.SubScope("normalized"), op.Sub(s.SubScope("centered"), h, mm.read), invStd)
	}
	if g := b.byName[l.Name+"/gamma"]; g != nil {
		norm = op.Mul(s.SubScope("gamma"), norm, g.read)
	}
	if be := b.byName[l.Name+"/beta"]; be != nil {
		norm = op.AddV2(s.SubScope("beta"), norm, be.read)
	}
	return norm, updates
}

// loss is the batch's mean per-sample loss (Keras's sum_over_batch_size reduction).
func (b *builder) loss(s *op.Scope, pred tf.Output, outputDim int) tf.Output {
	c, y := b.comp, b.g.y
	batchAndFeatures := op.Const(s.SubScope("axes"), []int32{0, 1})
	mean := func(v tf.Output) tf.Output { return op.Mean(s.SubScope("mean"), v, batchAndFeatures) }
	switch c.Loss {
	case model.LossMSE:
		return mean(op.Square(s.SubScope("square"), op.Sub(s.SubScope("error"), pred, y)))
	case model.LossMAE:
		return mean(op.Abs(s.SubScope("abs"), op.Sub(s.SubScope("error"), pred, y)))
	case model.LossHuber:
		// q = min(|e|, δ): 0.5·q² + δ·(|e| − q) is 0.5e² inside δ and δ|e| − 0.5δ² outside.
		delta := constant(s, float32(c.HuberDelta))
		a := op.Abs(s.SubScope("abs"), op.Sub(s.SubScope("error"), pred, y))
		q := op.Minimum(s.SubScope("quadratic"), a, delta)
		quad := op.Mul(s.SubScope("half_square"), op.Square(s.SubScope("square"), q), constant(s, 0.5))
		lin := op.Mul(s.SubScope("linear"), op.Sub(s.SubScope("excess"), a, q), delta)
		return mean(op.AddV2(s.SubScope("huber"), quad, lin))
	case model.LossBinaryCrossentropy:
		if c.FromLogits {
			// max(x, 0) − x·y + log(1 + e^−|x|).
			relu := op.Maximum(s.SubScope("relu"), pred, constant(s, 0))
			xy := op.Mul(s.SubScope("xy"), pred, y)
			soft := op.Log1p(s.SubScope("log1p"), op.Exp(s.SubScope("exp"), op.Neg(s.SubScope("neg"), op.Abs(s.SubScope("abs"), pred))))
			return mean(op.AddV2(s.SubScope("bce"), op.Sub(s.SubScope("diff"), relu, xy), soft))
		}
		p := clip(s, pred)
		one := constant(s, 1)
		pos := op.Mul(s.SubScope("pos"), y, op.Log(s.SubScope("log_p"), p))
		neg := op.Mul(s.SubScope("neg"), op.Sub(s.SubScope("one_minus_y"), one, y),
			op.Log(s.SubScope("log_q"), op.Sub(s.SubScope("one_minus_p"), one, p)))
		return mean(op.Neg(s.SubScope("bce"), op.AddV2(s.SubScope("sum"), pos, neg)))
	default: // categorical and sparse categorical crossentropy
		target := y
		if c.Loss == model.LossSparseCategoricalCE {
			idx := op.Cast(s.SubScope("index"), op.Reshape(s.SubScope("flat"), y, op.Const(s.SubScope("shape"), []int32{-1})), tf.Int64)
			target = op.OneHot(s.SubScope("onehot"), idx, op.Const(s.SubScope("depth"), int32(outputDim)),
				constant(s, 1), constant(s, 0))
		}
		var logp tf.Output
		if c.FromLogits {
			logp = op.LogSoftmax(s.SubScope("log_softmax"), pred)
		} else {
			// Normalise to a distribution, clip, log: as Keras on probabilities.
			axis1 := op.Const(s.SubScope("axis"), []int32{1})
			sum := op.Sum(s.SubScope("total"), pred, axis1, op.SumKeepDims(true))
			logp = op.Log(s.SubScope("log"), clip(s, op.RealDiv(s.SubScope("normalized"), pred, sum)))
		}
		perSample := op.Neg(s.SubScope("cce"), op.Sum(s.SubScope("sum"), op.Mul(s.SubScope("ylogp"), target, logp),
			op.Const(s.SubScope("axis"), []int32{1})))
		return op.Mean(s.SubScope("mean"), perSample, op.Const(s.SubScope("batch"), []int32{0}))
	}
}

// clip limits probabilities to [ε, 1 − ε]; the clipped elements pass no gradient.
func clip(s *op.Scope, p tf.Output) tf.Output {
	lo := op.Maximum(s.SubScope("clip_lo"), p, constant(s, lossEpsilon))
	return op.Minimum(s.SubScope("clip_hi"), lo, constant(s, float32(1-lossEpsilon)))
}

// trainStep adds the gradients of the training loss with respect to the trainable weights
// and one update of every weight by the optimizer's training op, all after every gradient
// is computed (as the Go engine applies its updates after the whole backward pass), then a
// step operation grouping the updates with the moving-statistics updates.
func (b *builder) trainStep(movingUpdates []*tf.Operation) error {
	o := b.comp.Optimizer
	var (
		trainable []*weightVar
		xs        []tf.Output
	)
	for _, w := range b.g.weights {
		if w.spec.Trainable {
			trainable = append(trainable, w)
			xs = append(xs, w.read)
		}
	}
	// Gradients with respect to the values read in the forward pass: the reads, not the
	// variables, are what the loss is a function of.
	grads := op.Gradients(b.root.SubScope("gradients"), []tf.Output{b.g.lossTrain}, xs)
	if err := b.root.Err(); err != nil {
		return fmt.Errorf("building the gradients: %w", err)
	}
	gradOps := make([]*tf.Operation, len(grads))
	for i, g := range grads {
		if g.Op == nil {
			return fmt.Errorf("weight %s has no gradient", trainable[i].spec.Name)
		}
		gradOps[i] = g.Op
	}
	s := b.root.SubScope("update")
	gradientsDone := op.NoOp(s.SubScope("gradients_done").WithControlDependencies(gradOps...))

	lr := constant(s, float32(o.LearningRate))
	if o.Name == model.OptAdam || o.Name == model.OptAdamW {
		b.g.beta1Power = op.Placeholder(s.SubScope("beta1_power"), tf.Float, op.PlaceholderShape(tf.ScalarShape()))
		b.g.beta2Power = op.Placeholder(s.SubScope("beta2_power"), tf.Float, op.PlaceholderShape(tf.ScalarShape()))
	}
	var applies []*tf.Operation
	for i, w := range trainable {
		ws := s.SubScope(fmt.Sprintf("weight%d", i)).WithControlDependencies(gradientsDone)
		g := grads[i]
		if o.ClipNorm > 0 {
			// g·clip/max(‖g‖, clip): unchanged when the norm is within the clip.
			axes := make([]int32, len(w.shape))
			for k := range axes {
				axes[k] = int32(k)
			}
			norm := op.Sqrt(ws.SubScope("norm"), op.Sum(ws.SubScope("sum_squares"),
				op.Square(ws.SubScope("square"), g), op.Const(ws.SubScope("axes"), axes)))
			limit := constant(ws, float32(o.ClipNorm))
			g = op.Mul(ws.SubScope("clipped"), g,
				op.RealDiv(ws.SubScope("factor"), limit, op.Maximum(ws.SubScope("larger"), norm, limit)))
		}
		if o.WeightDecay > 0 {
			// Decoupled weight decay before the update, w −= w·wd·lr, as Keras and the Go engine.
			decay := op.Mul(ws.SubScope("decay"), op.Mul(ws.SubScope("decay_w"), w.read, constant(ws, float32(o.WeightDecay))), lr)
			ws = ws.WithControlDependencies(op.AssignSubVariableOp(ws.SubScope("apply_decay"), w.handle, decay))
		}
		var apply *tf.Operation
		switch o.Name {
		case model.OptSGD:
			if o.Momentum > 0 {
				// Keras's form: v = μv − lr·g; w += v (Nesterov: w += μv − lr·g).
				apply = op.ResourceApplyKerasMomentum(ws.SubScope("sgd"), w.handle, w.slots[0].handle, lr, g,
					constant(ws, float32(o.Momentum)), op.ResourceApplyKerasMomentumUseNesterov(o.Nesterov))
			} else {
				apply = op.ResourceApplyGradientDescent(ws.SubScope("sgd"), w.handle, lr, g)
			}
		case model.OptAdam, model.OptAdamW:
			// Keras's form: lr·√(1 − β2^t)/(1 − β1^t) · m/(√v + ε).
			apply = op.ResourceApplyAdam(ws.SubScope("adam"), w.handle, w.slots[0].handle, w.slots[1].handle,
				b.g.beta1Power, b.g.beta2Power, lr, constant(ws, float32(o.Beta1)), constant(ws, float32(o.Beta2)),
				constant(ws, float32(o.Epsilon)), g)
		case model.OptRMSprop:
			// ms = ρ·ms + (1 − ρ)g²; mom = μ·mom + lr·g/√(ms + ε); w −= mom.
			apply = op.ResourceApplyRMSProp(ws.SubScope("rmsprop"), w.handle, w.slots[0].handle, w.slots[1].handle,
				lr, constant(ws, float32(o.Rho)), constant(ws, float32(o.Momentum)), constant(ws, float32(o.Epsilon)), g)
		default:
			return fmt.Errorf("optimizer %q: %w", o.Name, ErrUnsupported)
		}
		applies = append(applies, apply)
	}
	deps := append(applies, movingUpdates...)
	b.g.step = op.NoOp(b.root.SubScope("train_step").WithControlDependencies(deps...))
	if err := b.root.Err(); err != nil {
		return fmt.Errorf("building the training step: %w", err)
	}
	return nil
}
