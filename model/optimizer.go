package model

import (
	"math"
	"runtime"
)

// optimizer applies one update to every trainable parameter, with the arithmetic of Keras 3
// (or of TF.js with TFJSForm/TFJSEpsilon), each operation rounded to float32 as there.
type optimizer struct {
	cfg OptimizerConfig
	// iterations counts applied updates (Keras's optimizer.iterations).
	iterations int64
	// accBeta1 and accBeta2 are TF.js Adam's running float32 products β1^t, β2^t.
	accBeta1, accBeta2 float32
}

func newOptimizer(cfg OptimizerConfig) *optimizer {
	return &optimizer{cfg: cfg, accBeta1: float32(cfg.Beta1), accBeta2: float32(cfg.Beta2)}
}

// slotCount is how many state tensors each parameter needs.
func (o *optimizer) slotCount() int {
	switch o.cfg.Name {
	case OptSGD:
		if o.cfg.Momentum > 0 {
			return 1
		}
		return 0
	case OptAdam, OptAdamW:
		return 2
	case OptRMSprop:
		if o.cfg.Momentum > 0 {
			return 2
		}
		return 1
	}
	return 0
}

// initSlots gives every trainable parameter zeroed slots.
func (o *optimizer) initSlots(ps []*param) {
	n := o.slotCount()
	for _, p := range ps {
		if !p.trainable {
			continue
		}
		p.slots = make([][]float32, n)
		for i := range p.slots {
			p.slots[i] = make([]float32, len(p.w))
		}
	}
}

// learningRate is the rate for the next update.
func (o *optimizer) learningRate() float64 {
	if o.cfg.Schedule != nil {
		return o.cfg.Schedule.rate(o.cfg.LearningRate, o.iterations)
	}
	return o.cfg.LearningRate
}

// apply updates the parameters from their gradients.
func (o *optimizer) apply(ps []*param) {
	c := &o.cfg
	lr := float32(o.learningRate())
	t := o.iterations + 1
	// Per-step scalars, computed once as Keras and TF.js do.
	var alpha, oneMinusAcc1, oneMinusAcc2 float32
	if c.Name == OptAdam || c.Name == OptAdamW {
		if c.TFJSEpsilon {
			oneMinusAcc1 = 1 - o.accBeta1
			oneMinusAcc2 = 1 - o.accBeta2
		} else {
			b1p := float32(math.Pow(float64(float32(c.Beta1)), float64(t)))
			b2p := float32(math.Pow(float64(float32(c.Beta2)), float64(t)))
			alpha = lr * float32(math.Sqrt(float64(1-b2p))) / (1 - b1p)
		}
	}
	for _, p := range ps {
		if !p.trainable {
			continue
		}
		g := p.g
		if c.ClipNorm > 0 {
			clipByNorm(g, float32(c.ClipNorm))
		}
		// The update is elementwise: large tensors are split over the cores (each element is
		// still computed one way, so results do not depend on the split).
		n := len(p.w)
		chunks := 1
		if n >= 1<<16 {
			chunks = min(runtime.GOMAXPROCS(0), n>>15)
		}
		parallelFor(chunks, chunks, func(lo, hi int) {
			for ch := lo; ch < hi; ch++ {
				o.update(p.view(ch*n/chunks, (ch+1)*n/chunks), lr, alpha, oneMinusAcc1, oneMinusAcc2)
			}
		})
	}
	if c.TFJSEpsilon && (c.Name == OptAdam || c.Name == OptAdamW) {
		o.accBeta1 *= float32(c.Beta1)
		o.accBeta2 *= float32(c.Beta2)
	}
	o.iterations++
}

// update applies the step to one parameter (or a slice of one, see view).
func (o *optimizer) update(p *param, lr, alpha, oneMinusAcc1, oneMinusAcc2 float32) {
	c := &o.cfg
	g := p.g
	w := p.w
	if c.WeightDecay > 0 {
		wd := float32(c.WeightDecay)
		for i := range w {
			w[i] -= w[i] * wd * lr
		}
	}
	switch c.Name {
	case OptSGD:
		o.sgd(p, w, g, lr)
	case OptAdam, OptAdamW:
		m, v := p.slots[0], p.slots[1]
		b1, b2, eps := float32(c.Beta1), float32(c.Beta2), float32(c.Epsilon)
		if c.TFJSEpsilon {
			omb1, omb2 := float32(1-c.Beta1), float32(1-c.Beta2)
			if vecAdamTFJS(w, g, m, v, &[8]float32{b1, omb1, b2, omb2, oneMinusAcc1, oneMinusAcc2, eps, -lr}) {
				break
			}
			for i, gi := range g {
				m[i] = m[i]*b1 + gi*omb1
				v[i] = v[i]*b2 + (gi*gi)*omb2
				mh := m[i] / oneMinusAcc1
				vh := v[i] / oneMinusAcc2
				w[i] += (mh / (sqrt32(vh) + eps)) * -lr
			}
		} else {
			omb1, omb2 := float32(1-c.Beta1), float32(1-c.Beta2)
			if vecAdam(w, g, m, v, omb1, omb2, alpha, eps) {
				break
			}
			for i, gi := range g {
				m[i] += (gi - m[i]) * omb1
				v[i] += (gi*gi - v[i]) * omb2
				w[i] -= (m[i] * alpha) / (sqrt32(v[i]) + eps)
			}
		}
	case OptRMSprop:
		rho, eps := float32(c.Rho), float32(c.Epsilon)
		omr := float32(1 - c.Rho)
		v := p.slots[0]
		if c.Momentum > 0 {
			mom := p.slots[1]
			mu := float32(c.Momentum)
			for i, gi := range g {
				v[i] = rho*v[i] + omr*(gi*gi)
				inc := lr * gi / sqrt32(v[i]+eps)
				mom[i] = mu*mom[i] + inc
				w[i] -= mom[i]
			}
		} else {
			for i, gi := range g {
				v[i] = rho*v[i] + omr*(gi*gi)
				w[i] -= lr * gi / sqrt32(v[i]+eps)
			}
		}
	}
}

func (o *optimizer) sgd(p *param, w, g []float32, lr float32) {
	c := &o.cfg
	if c.Momentum == 0 {
		for i, gi := range g {
			w[i] -= gi * lr
		}
		return
	}
	v := p.slots[0]
	mu := float32(c.Momentum)
	if c.TFJSForm {
		// TF.js: a = μa + g; w += −lr·a (Nesterov: w += −lr·(g + μa)).
		nlr := -lr
		for i, gi := range g {
			v[i] = mu*v[i] + gi
			if c.Nesterov {
				w[i] += nlr * (gi + v[i]*mu)
			} else {
				w[i] += nlr * v[i]
			}
		}
		return
	}
	// Keras: v = μv − lr·g; w += v (Nesterov: w += μv − lr·g).
	for i, gi := range g {
		v[i] = -gi*lr + v[i]*mu
		if c.Nesterov {
			w[i] += -gi*lr + v[i]*mu
		} else {
			w[i] += v[i]
		}
	}
}

func sqrt32(x float32) float32 { return float32(math.Sqrt(float64(x))) }

// clipByNorm scales g so that its L2 norm is at most clip (Keras clip_by_norm).
func clipByNorm(g []float32, clip float32) {
	var s float64
	for _, v := range g {
		s += float64(v) * float64(v)
	}
	if s == 0 {
		return
	}
	norm := float32(math.Sqrt(s))
	if norm <= clip {
		return
	}
	for i, v := range g {
		g[i] = v * clip / norm
	}
}
