package model

import (
	"math"
	"runtime"
)

// param is one weight tensor. Trainable ones have a gradient buffer and optimizer slots.
type param struct {
	name      string // "<layer>/<weight>", as TF.js names it
	shape     []int
	w         []float32
	g         []float32
	trainable bool
	slots     [][]float32
}

// view is the part [lo, hi) of a parameter's values, gradient and slots, for elementwise
// updates split over goroutines.
func (p *param) view(lo, hi int) *param {
	if lo == 0 && hi == len(p.w) {
		return p
	}
	v := &param{name: p.name, w: p.w[lo:hi], g: p.g[lo:hi], trainable: p.trainable, slots: make([][]float32, len(p.slots))}
	for i, s := range p.slots {
		v.slots[i] = s[lo:hi]
	}
	return v
}

func newParam(name string, trainable bool, shape ...int) *param {
	n := 1
	for _, d := range shape {
		n *= d
	}
	p := &param{name: name, shape: shape, w: make([]float32, n), trainable: trainable}
	if trainable {
		p.g = make([]float32, n)
	}
	return p
}

// layer is one stage of the Sequential model. forward returns the layer's output buffer
// (valid until the next forward); backward takes dL/dy (which it may overwrite) and returns
// dL/dx, or nil when needDX is false.
type layer interface {
	spec() *LayerSpec
	outDim() int
	params() []*param
	forward(x []float32, rows int, training bool, rng *rng) []float32
	backward(dy []float32, rows int, needDX bool) []float32
}

// grow returns buf resized to n, reallocating only when it is too small.
func grow(buf []float32, n int) []float32 {
	if cap(buf) < n {
		return make([]float32, n, n+n/4)
	}
	return buf[:n]
}

// denseLayer is y = f(x·W + b).
type denseLayer struct {
	ls       LayerSpec
	in, out  int
	act      activation
	kernel   *param
	bias     *param
	x        []float32 // the input of the last forward pass
	z, y, dx []float32
	dwT      []float32 // dWᵀ of a narrow layer (see backward)
}

func newDense(ls LayerSpec, in int) *denseLayer {
	d := &denseLayer{ls: ls, in: in, out: ls.Units, act: activation{name: ls.Activation, alpha: float32(ls.Alpha)}}
	d.kernel = newParam(ls.Name+"/kernel", true, in, ls.Units)
	if ls.UseBias {
		d.bias = newParam(ls.Name+"/bias", true, ls.Units)
	}
	return d
}

func (d *denseLayer) spec() *LayerSpec { return &d.ls }
func (d *denseLayer) outDim() int      { return d.out }
func (d *denseLayer) params() []*param {
	if d.bias == nil {
		return []*param{d.kernel}
	}
	return []*param{d.kernel, d.bias}
}

func (d *denseLayer) forward(x []float32, rows int, training bool, _ *rng) []float32 {
	d.x = x
	n := rows * d.out
	d.z = grow(d.z, n)
	y := d.z
	if d.act.needsPre() {
		d.y = grow(d.y, n)
		y = d.y
	}
	// Otherwise the pre-activation is not needed later: the activation applies in place.
	out := d.out
	if d.act.elementwise() {
		// Bias and activation on each block of the product as it is finished, still in cache.
		sgemmThen(false, false, rows, out, d.in, x, d.in, d.kernel.w, out, d.z, out, false, func(r0, r1, c0, c1 int) {
			if c1 > c0 {
				d.finish(y, r0, r1, c0, c1)
			}
		})
		return y[:n]
	}
	sgemm(false, false, rows, out, d.in, x, d.in, d.kernel.w, out, d.z, out, false)
	// Softmax takes an exponential per value: worth both cores at a sixteenth of the size.
	parallelRows(rows, out*16, func(r0, r1 int) {
		d.addBias(r0, r1, 0, out)
		d.act.forward(d.z[r0*out:r1*out], y[r0*out:r1*out], r1-r0, out)
	})
	return y[:n]
}

// addBias adds the bias to the block rows [r0, r1) × columns [c0, c1) of z.
func (d *denseLayer) addBias(r0, r1, c0, c1 int) {
	if d.bias == nil {
		return
	}
	b := d.bias.w[c0:c1]
	for r := r0; r < r1; r++ {
		zr := d.z[r*d.out+c0 : r*d.out+c1]
		for j := range zr {
			zr[j] += b[j]
		}
	}
}

// finish adds the bias to a block of z and writes its activation to y.
func (d *denseLayer) finish(y []float32, r0, r1, c0, c1 int) {
	if d.act.name == ActReLU || d.act.name == ActLinear {
		// y is z: one vector pass over the block where the machine has one.
		var b []float32
		if d.bias != nil {
			b = d.bias.w[c0:c1]
		}
		if vecBiasReLU(d.z[r0*d.out+c0:], b, r1-r0, c1-c0, d.out, d.act.name == ActReLU) {
			return
		}
	}
	d.addBias(r0, r1, c0, c1)
	for r := r0; r < r1; r++ {
		d.act.forward(d.z[r*d.out+c0:r*d.out+c1], y[r*d.out+c0:r*d.out+c1], 1, c1-c0)
	}
}

func (d *denseLayer) backward(dy []float32, rows int, needDX bool) []float32 {
	y := d.z
	if d.act.needsPre() {
		y = d.y
	}
	out := d.out
	if d.act.elementwise() {
		// dz = dy·f'(z) and db = Σ_rows dz in one pass over dy, split over the cores by
		// columns: every column is still summed in row order.
		parallelCols(rows, out, func(c0, c1 int) {
			var db []float32
			if d.bias != nil {
				db = d.bias.g[c0:c1]
				clear(db)
			}
			if d.act.name == ActReLU && vecReLUGrad(dy[c0:], y[c0:], db, rows, c1-c0, out) {
				return
			}
			for r := 0; r < rows; r++ {
				dr := dy[r*out+c0 : r*out+c1]
				d.act.backward(dr, y[r*out+c0:r*out+c1], d.z[r*out+c0:r*out+c1], 1, c1-c0)
				for j, v := range db {
					db[j] = v + dr[j]
				}
			}
		})
	} else {
		parallelRows(rows, out, func(r0, r1 int) {
			d.act.backward(dy[r0*out:r1*out], y[r0*out:r1*out], d.z[r0*out:r1*out], r1-r0, out)
		})
		if d.bias != nil {
			colSum(dy, rows, out, d.bias.g)
		}
	}
	// dW = xᵀ·dz, dx = dz·Wᵀ.
	if out < activeKernel.nr && d.in >= activeKernel.nr {
		// A narrow layer (a few outputs) would fill a fraction of each nr-wide tile: compute
		// dWᵀ = dzᵀ·x instead, with the wide side along the tiles, and transpose it. Every
		// element is the same sum of the same products in the same order, so the bits are
		// those of xᵀ·dz.
		d.dwT = grow(d.dwT, out*d.in)
		sgemm(true, false, out, d.in, rows, dy, out, d.x, d.in, d.dwT, d.in, false)
		for j := 0; j < out; j++ {
			for i, v := range d.dwT[j*d.in : (j+1)*d.in] {
				d.kernel.g[i*out+j] = v
			}
		}
	} else {
		sgemm(true, false, d.in, out, rows, d.x, d.in, dy, out, d.kernel.g, out, false)
	}
	if !needDX {
		return nil
	}
	d.dx = grow(d.dx, rows*d.in)
	sgemm(false, true, rows, d.in, out, dy, out, d.kernel.w, out, d.dx, d.in, false)
	return d.dx
}

// parallelRows runs fn over row ranges of a rows×dim block, split over the cores when the
// block is large. fn must treat rows independently, so the split cannot change results.
func parallelRows(rows, dim int, fn func(r0, r1 int)) {
	workers := 1
	if rows*dim >= 1<<16 {
		workers = min(runtime.GOMAXPROCS(0), rows)
	}
	parallelFor(workers, rows, fn)
}

// parallelCols runs fn over column ranges of a rows×dim block, split over the cores when
// the block is large. fn must treat columns independently, so the split cannot change results.
func parallelCols(rows, dim int, fn func(c0, c1 int)) {
	workers := 1
	if rows*dim >= 1<<16 {
		workers = min(runtime.GOMAXPROCS(0), dim/16)
	}
	parallelFor(workers, dim, fn)
}

// colSum writes the column sums of a rows×dim block, each summed in row order.
func colSum(a []float32, rows, dim int, dst []float32) {
	clear(dst[:dim])
	for r := 0; r < rows; r++ {
		ar := a[r*dim : (r+1)*dim]
		for j, v := range ar {
			dst[j] += v
		}
	}
}

// activationLayer applies an activation on its own (Keras Activation, LeakyReLU).
type activationLayer struct {
	ls   LayerSpec
	dim  int
	act  activation
	z, y []float32
}

func newActivationLayer(ls LayerSpec, dim int) *activationLayer {
	name := ls.Activation
	if ls.Type == LayerLeakyReLU {
		name = ActLeakyReLU
	}
	return &activationLayer{ls: ls, dim: dim, act: activation{name: name, alpha: float32(ls.Alpha)}}
}

func (a *activationLayer) spec() *LayerSpec { return &a.ls }
func (a *activationLayer) outDim() int      { return a.dim }
func (a *activationLayer) params() []*param { return nil }

func (a *activationLayer) forward(x []float32, rows int, training bool, _ *rng) []float32 {
	n := rows * a.dim
	a.z = x[:n]
	a.y = grow(a.y, n)
	a.act.forward(x, a.y, rows, a.dim)
	return a.y
}

func (a *activationLayer) backward(dy []float32, rows int, needDX bool) []float32 {
	a.act.backward(dy, a.y, a.z, rows, a.dim)
	return dy
}

// dropoutLayer zeroes inputs with probability rate at training time and scales the rest by
// 1/(1-rate) (inverted dropout, as Keras); it is the identity at inference.
type dropoutLayer struct {
	ls    LayerSpec
	dim   int
	keep  []bool
	y     []float32
	train bool
}

func (d *dropoutLayer) spec() *LayerSpec { return &d.ls }
func (d *dropoutLayer) outDim() int      { return d.dim }
func (d *dropoutLayer) params() []*param { return nil }

func (d *dropoutLayer) forward(x []float32, rows int, training bool, r *rng) []float32 {
	d.train = training && d.ls.Rate > 0
	if !d.train {
		return x
	}
	n := rows * d.dim
	if cap(d.keep) < n {
		d.keep = make([]bool, n)
	}
	d.keep = d.keep[:n]
	d.y = grow(d.y, n)
	rate := d.ls.Rate
	keepProb := float32(1 - rate)
	for i := range d.keep {
		k := r.keep(rate)
		d.keep[i] = k
		if k {
			d.y[i] = x[i] / keepProb
		} else {
			d.y[i] = 0
		}
	}
	return d.y
}

func (d *dropoutLayer) backward(dy []float32, rows int, needDX bool) []float32 {
	if !d.train {
		return dy
	}
	keepProb := float32(1 - d.ls.Rate)
	for i, k := range d.keep[:rows*d.dim] {
		if k {
			dy[i] /= keepProb
		} else {
			dy[i] = 0
		}
	}
	return dy
}

// batchNormLayer normalises each feature by the batch's mean and (biased) variance while
// training, updating moving averages that it uses at inference.
type batchNormLayer struct {
	ls                    LayerSpec
	dim                   int
	gamma, beta           *param
	movingMean, movingVar *param
	tfjsMovingAverage     bool
	xhat, y               []float32
	invStd                []float32
	train                 bool
}

func newBatchNorm(ls LayerSpec, dim int) *batchNormLayer {
	b := &batchNormLayer{ls: ls, dim: dim, invStd: make([]float32, dim)}
	if ls.Scale {
		b.gamma = newParam(ls.Name+"/gamma", true, dim)
		fill(b.gamma.w, 1)
	}
	if ls.Center {
		b.beta = newParam(ls.Name+"/beta", true, dim)
	}
	b.movingMean = newParam(ls.Name+"/moving_mean", false, dim)
	b.movingVar = newParam(ls.Name+"/moving_variance", false, dim)
	fill(b.movingVar.w, 1)
	return b
}

func fill(s []float32, v float32) {
	for i := range s {
		s[i] = v
	}
}

func (b *batchNormLayer) spec() *LayerSpec { return &b.ls }
func (b *batchNormLayer) outDim() int      { return b.dim }
func (b *batchNormLayer) params() []*param {
	var ps []*param
	if b.gamma != nil {
		ps = append(ps, b.gamma)
	}
	if b.beta != nil {
		ps = append(ps, b.beta)
	}
	return append(ps, b.movingMean, b.movingVar)
}

func (b *batchNormLayer) forward(x []float32, rows int, training bool, _ *rng) []float32 {
	n, dim := rows*b.dim, b.dim
	b.y = grow(b.y, n)
	eps := float32(b.ls.Epsilon)
	b.train = training
	if !training {
		for j := 0; j < dim; j++ {
			b.invStd[j] = float32(1 / math.Sqrt(float64(b.movingVar.w[j]+eps)))
		}
		for r := 0; r < rows; r++ {
			xr, yr := x[r*dim:(r+1)*dim], b.y[r*dim:(r+1)*dim]
			for j, v := range xr {
				h := (v - b.movingMean.w[j]) * b.invStd[j]
				yr[j] = b.affine(j, h)
			}
		}
		return b.y
	}
	// Batch statistics, each column summed in row order in float64.
	mean := make([]float64, dim)
	variance := make([]float64, dim)
	for r := 0; r < rows; r++ {
		for j, v := range x[r*dim : (r+1)*dim] {
			mean[j] += float64(v)
		}
	}
	for j := range mean {
		mean[j] /= float64(rows)
	}
	for r := 0; r < rows; r++ {
		for j, v := range x[r*dim : (r+1)*dim] {
			d := float64(v) - mean[j]
			variance[j] += d * d
		}
	}
	b.xhat = grow(b.xhat, n)
	m32 := make([]float32, dim)
	for j := range variance {
		variance[j] /= float64(rows)
		m32[j] = float32(mean[j])
		b.invStd[j] = float32(1 / math.Sqrt(float64(float32(variance[j])+eps)))
	}
	for r := 0; r < rows; r++ {
		xr, hr, yr := x[r*dim:(r+1)*dim], b.xhat[r*dim:(r+1)*dim], b.y[r*dim:(r+1)*dim]
		for j, v := range xr {
			h := (v - m32[j]) * b.invStd[j]
			hr[j] = h
			yr[j] = b.affine(j, h)
		}
	}
	mom := float32(b.ls.Momentum)
	for j := 0; j < dim; j++ {
		bm, bv := float32(mean[j]), float32(variance[j])
		if b.tfjsMovingAverage {
			// TF.js: moving − (moving − batch)·(1 − momentum).
			decay := float32(1 - b.ls.Momentum)
			b.movingMean.w[j] -= (b.movingMean.w[j] - bm) * decay
			b.movingVar.w[j] -= (b.movingVar.w[j] - bv) * decay
		} else {
			// Keras: moving·momentum + batch·(1 − momentum).
			b.movingMean.w[j] = b.movingMean.w[j]*mom + bm*float32(1-b.ls.Momentum)
			b.movingVar.w[j] = b.movingVar.w[j]*mom + bv*float32(1-b.ls.Momentum)
		}
	}
	return b.y
}

func (b *batchNormLayer) affine(j int, h float32) float32 {
	if b.gamma != nil {
		h *= b.gamma.w[j]
	}
	if b.beta != nil {
		h += b.beta.w[j]
	}
	return h
}

func (b *batchNormLayer) backward(dy []float32, rows int, needDX bool) []float32 {
	dim := b.dim
	if !b.train {
		// Inference-mode backward (not used by fit, kept for completeness): a fixed affine map.
		for r := 0; r < rows; r++ {
			for j := range dim {
				g := b.invStd[j]
				if b.gamma != nil {
					g *= b.gamma.w[j]
				}
				dy[r*dim+j] *= g
			}
		}
		return dy
	}
	sumDy := make([]float64, dim)
	sumDyH := make([]float64, dim)
	for r := 0; r < rows; r++ {
		dr, hr := dy[r*dim:(r+1)*dim], b.xhat[r*dim:(r+1)*dim]
		for j, v := range dr {
			sumDy[j] += float64(v)
			sumDyH[j] += float64(v) * float64(hr[j])
		}
	}
	if b.gamma != nil {
		for j := range dim {
			b.gamma.g[j] = float32(sumDyH[j])
		}
	}
	if b.beta != nil {
		for j := range dim {
			b.beta.g[j] = float32(sumDy[j])
		}
	}
	if !needDX {
		return nil
	}
	// dx = γ·invStd/N · (N·dy − Σdy − x̂·Σ(dy·x̂)).
	nf := float64(rows)
	for j := 0; j < dim; j++ {
		sumDy[j] /= nf
		sumDyH[j] /= nf
	}
	for r := 0; r < rows; r++ {
		dr, hr := dy[r*dim:(r+1)*dim], b.xhat[r*dim:(r+1)*dim]
		for j, v := range dr {
			g := float64(b.invStd[j])
			if b.gamma != nil {
				g *= float64(b.gamma.w[j])
			}
			dr[j] = float32(g * (float64(v) - sumDy[j] - float64(hr[j])*sumDyH[j]))
		}
	}
	return dy
}
