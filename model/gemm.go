package model

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
)

// Matrix products, C (m×n) = op(A)·op(B) (+ C), row-major, in the layout of the classic
// packed GEMM: op(B) is packed into panels kc deep and nr wide, op(A) into panels mr tall,
// and a register-blocked micro-kernel computes one mr×nr tile of C per call. The
// transposes cost nothing extra because packing reads either layout.
//
// Work is split over goroutines by tiles of C. Every element of C is reduced by exactly one
// goroutine, over k in increasing order and in fixed kc blocks, so the result is the same
// whatever the number of cores.

const (
	gemmKC = 256 // depth of a packed panel
	gemmMC = 96  // rows of A packed at a time (a multiple of every kernel's mr)
	gemmNC = 2048
	// Below this many multiply-adds a product runs on one goroutine: forking costs more.
	gemmParallelMin = 1 << 16
)

// gemmKernel is the micro-kernel in use: mr, nr and the function computing
// C[0:mr, 0:nr] (row stride ldc) = (load ? C : 0) + Σ_p a[p*mr+i]·b[p*nr+j].
type gemmKernel struct {
	name   string
	mr, nr int
	fn     func(kc int, a, b []float32, c []float32, ldc int, load bool)
	// fnRows, where the kernel has it, is fn reading A unpacked: a[i*lda+p].
	fnRows func(kc int, a []float32, lda int, b, c []float32, ldc int, load bool)
	// fnBRows, where the kernel has it, is fn reading B unpacked: b[p*ldb+j].
	fnBRows func(kc int, a, b []float32, ldb int, c []float32, ldc int, load bool)
}

// activeKernel is chosen at start-up from the CPU's features (see gemm_amd64.go).
var activeKernel = selectKernel()

// goKernel is the portable kernel.
var goKernel = gemmKernel{name: "go-4x16", mr: 4, nr: 16, fn: func(kc int, a, b, c []float32, ldc int, load bool) {
	kernelGoSized(4, 16, kc, a, b, c, ldc, load)
}}

// KernelName reports which matrix-multiply kernel the engine uses (for benchmarks).
func KernelName() string { return activeKernel.name }

var packPool = sync.Pool{New: func() any { s := make([]float32, 0); return &s }}

func getBuf(n int) *[]float32 {
	p := packPool.Get().(*[]float32)
	if cap(*p) < n {
		*p = make([]float32, n)
	}
	*p = (*p)[:n]
	return p
}

// sgemm computes C = op(A)·op(B), or C += op(A)·op(B) when accumulate is set. op(A) is m×k:
// A is m×k with row stride lda, or k×m when transA. op(B) is k×n: B is k×n (ldb), or n×k
// when transB.
func sgemm(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, accumulate bool) {
	sgemmThen(transA, transB, m, n, k, a, lda, b, ldb, c, ldc, accumulate, nil)
}

// gemmEpilogue finishes the block of C rows [r0, r1) × columns [c0, c1) once its products
// are final, while the block is still in cache (a layer adds its bias and applies its
// activation there instead of in another pass over C).
type gemmEpilogue func(r0, r1, c0, c1 int)

// sgemmThen is sgemm followed by then on every block of C, each block once; nil for none.
func sgemmThen(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, accumulate bool, then gemmEpilogue) {
	workers := runtime.GOMAXPROCS(0)
	if m*n*k < gemmParallelMin {
		workers = 1
	}
	sgemmWorkers(workers, transA, transB, m, n, k, a, lda, b, ldb, c, ldc, accumulate, then)
}

// sgemmWorkers is sgemmThen on a given number of goroutines.
func sgemmWorkers(workers int, transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, accumulate bool, then gemmEpilogue) {
	if m == 0 || n == 0 {
		return
	}
	if k == 0 {
		if !accumulate {
			for i := 0; i < m; i++ {
				clear(c[i*ldc : i*ldc+n])
			}
		}
		if then != nil {
			then(0, m, 0, n)
		}
		return
	}
	kern := activeKernel
	mr, nr := kern.mr, kern.nr
	// The product runs in steps, one per block of nc columns and kc depths, in order, on
	// goroutines started once per product (waking one costs tens of microseconds on some
	// machines). In each step the workers first pack B̃ (kc × nc) in nr-wide panels, taking
	// panels in turn, then compute tiles of C: blocks of at most gemmMC rows, as many as the
	// workers can share evenly, so that each block's A is packed once. Only when there are
	// too few blocks for the workers is each split by columns into groups of nr panels (a
	// split repacks A). Workers take tiles in any order; each tile is computed the same way
	// whoever takes it, on the same grid of mr×nr tiles, and a step's tiles start only once
	// the previous step's are all done, so every element is summed over k in order. B̃
	// alternates between two buffers, so that a worker may pack the next step's while
	// another finishes this one's tiles.
	mAll := (m + mr - 1) / mr
	perBlock := gemmMC / mr
	blocks := (mAll + perBlock - 1) / perBlock
	if workers > 1 {
		blocks = min(mAll, (blocks+workers-1)/workers*workers)
	}
	splitFor := func(nPanels int) int {
		if workers > 1 && blocks < 2*workers {
			return max(1, min((8*workers+blocks-1)/blocks, nPanels/2))
		}
		return 1
	}
	pSteps := (k + gemmKC - 1) / gemmKC
	steps := (n + gemmNC - 1) / gemmNC * pSteps
	panelsOf := func(st int) int { return (min(gemmNC, n-st/pSteps*gemmNC) + nr - 1) / nr }
	kcMax := min(gemmKC, k)
	bSize := (min(gemmNC, n) + nr - 1) / nr * nr * kcMax
	bufs := [2]*[]float32{getBuf(bSize)}
	if steps > 1 {
		bufs[1] = getBuf(bSize)
	}
	// When C is at most one panel tall each value of B is used once, and when C is one
	// panel wide each value of A is: full panels are then read where they are instead of
	// being packed first (edge panels are still packed).
	directB := !transB && m <= mr && kern.fnBRows != nil
	prog := newGemmProgress(steps)
	worker := func() {
		// The packed block of A, then the scratch tile for edges (in the pooled buffer:
		// an array here would escape to the heap on every call).
		ap := getBuf(gemmMC*kcMax + mr*nr)
		packedA, edge := (*ap)[:gemmMC*kcMax], (*ap)[gemmMC*kcMax:]
		for st := 0; st < steps; st++ {
			jc, pc := st/pSteps*gemmNC, st%pSteps*gemmKC
			nc, kc := min(gemmNC, n-jc), min(gemmKC, k-pc)
			load := accumulate || pc > 0
			nPanels := panelsOf(st)
			packedB := (*bufs[st%2])[:nPanels*nr*kc]
			for jp, ok := prog.claim(prog.packB, st, nPanels); ok; jp, ok = prog.claim(prog.packB, st, nPanels) {
				if cols := min(nr, nc-jp*nr); !directB || cols < nr {
					packB(transB, b, ldb, pc, jc+jp*nr, kc, cols, nr, packedB[jp*nr*kc:(jp+1)*nr*kc])
				}
				prog.finish(prog.packed, st, nPanels)
			}
			prog.wait(prog.packed, st, nPanels)
			if st > 0 {
				prog.wait(prog.computed, st-1, blocks*splitFor(panelsOf(st-1)))
			}
			directA := !transA && nPanels == 1 && kern.fnRows != nil && !directB
			split := splitFor(nPanels)
			tiles := blocks * split
			for t, ok := prog.claim(prog.compute, st, tiles); ok; t, ok = prog.claim(prog.compute, st, tiles) {
				ib, part := t/split, t%split
				p0, p1 := ib*mAll/blocks, (ib+1)*mAll/blocks
				ic := p0 * mr
				mc := min(p1*mr, m) - ic
				jpLo, jpHi := part*nPanels/split, (part+1)*nPanels/split
				mPanels := p1 - p0
				for ip := 0; ip < mPanels; ip++ {
					if rows := min(mr, mc-ip*mr); !directA || rows < mr {
						packA(transA, a, lda, ic+ip*mr, pc, kc, rows, mr, packedA[ip*mr*kc:(ip+1)*mr*kc])
					}
				}
				for ip := 0; ip < mPanels; ip++ {
					rows := min(mr, mc-ip*mr)
					pa := packedA[ip*mr*kc : (ip+1)*mr*kc]
					direct := directA && rows == mr
					ai := (ic+ip*mr)*lda + pc
					for jp := jpLo; jp < jpHi; jp++ {
						cols := min(nr, nc-jp*nr)
						pb := packedB[jp*nr*kc : (jp+1)*nr*kc]
						ci := (ic+ip*mr)*ldc + jc + jp*nr
						bi := pc*ldb + jc + jp*nr
						if rows == mr && cols == nr {
							if directB {
								kern.fnBRows(kc, pa, b[bi:], ldb, c[ci:], ldc, load)
							} else if direct {
								kern.fnRows(kc, a[ai:], lda, pb, c[ci:], ldc, load)
							} else {
								kern.fn(kc, pa, pb, c[ci:], ldc, load)
							}
							continue
						}
						// Edge tile: compute into a full-size scratch tile, copy the valid part.
						tile := edge[:mr*nr]
						if load {
							for i := 0; i < rows; i++ {
								copy(tile[i*nr:i*nr+cols], c[ci+i*ldc:ci+i*ldc+cols])
							}
						}
						if directB && cols == nr {
							kern.fnBRows(kc, pa, b[bi:], ldb, tile, nr, load)
						} else if direct {
							kern.fnRows(kc, a[ai:], lda, pb, tile, nr, load)
						} else {
							kern.fn(kc, pa, pb, tile, nr, load)
						}
						for i := 0; i < rows; i++ {
							copy(c[ci+i*ldc:ci+i*ldc+cols], tile[i*nr:i*nr+cols])
						}
					}
				}
				if then != nil && pc+kc == k {
					then(ic, ic+mc, jc+jpLo*nr, jc+min(jpHi*nr, nc))
				}
				prog.finish(prog.computed, st, tiles)
			}
		}
		packPool.Put(ap)
	}
	runWorkers(min(workers, max(blocks*splitFor(panelsOf(0)), panelsOf(0))), worker)
	packPool.Put(bufs[0])
	if bufs[1] != nil {
		packPool.Put(bufs[1])
	}
}

// gemmProgress coordinates a product's workers: for every step, the next B panel and tile
// to take, and how many of each are done. A worker waiting for the others spins briefly
// (they are usually microseconds from done) and then sleeps until woken.
type gemmProgress struct {
	packB, packed, compute, computed []atomic.Int64
	mu                               sync.Mutex
	cond                             sync.Cond
}

func newGemmProgress(steps int) *gemmProgress {
	counters := make([]atomic.Int64, 4*steps)
	p := &gemmProgress{packB: counters[:steps], packed: counters[steps : 2*steps],
		compute: counters[2*steps : 3*steps], computed: counters[3*steps:]}
	p.cond.L = &p.mu
	return p
}

// claim takes the next of n items of step st, or reports false when none is left.
func (p *gemmProgress) claim(c []atomic.Int64, st, n int) (int, bool) {
	i := int(c[st].Add(1) - 1)
	return i, i < n
}

// finish counts one of n items of step st as done, waking the waiters with the last.
func (p *gemmProgress) finish(c []atomic.Int64, st, n int) {
	if c[st].Add(1) == int64(n) {
		p.mu.Lock()
		p.cond.Broadcast()
		p.mu.Unlock()
	}
}

// wait returns once n items of step st are done.
func (p *gemmProgress) wait(c []atomic.Int64, st, n int) {
	for range 64 {
		if c[st].Load() >= int64(n) {
			return
		}
		runtime.Gosched()
	}
	p.mu.Lock()
	for c[st].Load() < int64(n) {
		p.cond.Wait()
	}
	p.mu.Unlock()
}

// runWorkers runs worker on n goroutines, the caller's among them, and waits for all.
func runWorkers(n int, worker func()) {
	var wg sync.WaitGroup
	for w := 1; w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			worker()
		}()
	}
	worker()
	wg.Wait()
}

// packA copies rows i0..i0+rows of op(A), columns p0..p0+kc, as dst[p*mr+i], zero-padded to mr.
func packA(trans bool, a []float32, lda, i0, p0, kc, rows, mr int, dst []float32) {
	if rows < mr {
		clear(dst[:kc*mr])
	}
	if trans {
		// op(A)[i][p] = A[p][i]: rows of A are contiguous in i.
		if vecCopyPanel(dst, mr, a[p0*lda+i0:], lda, rows, kc) {
			return
		}
		for p := 0; p < kc; p++ {
			src := a[(p0+p)*lda+i0 : (p0+p)*lda+i0+rows]
			copy(dst[p*mr:p*mr+rows], src)
		}
		return
	}
	i := 0
	if rows == 12 && mr == 12 {
		packA12(a[i0*lda+p0:], lda, kc, dst)
		return
	}
	// Four rows at a time: four sequential reads feed each group of four adjacent writes.
	for ; i+4 <= rows; i += 4 {
		r0 := a[(i0+i)*lda+p0 : (i0+i)*lda+p0+kc]
		r1 := a[(i0+i+1)*lda+p0 : (i0+i+1)*lda+p0+kc]
		r2 := a[(i0+i+2)*lda+p0 : (i0+i+2)*lda+p0+kc]
		r3 := a[(i0+i+3)*lda+p0 : (i0+i+3)*lda+p0+kc]
		for p := range r0 {
			d := dst[p*mr+i : p*mr+i+4 : p*mr+i+4]
			d[0], d[1], d[2], d[3] = r0[p], r1[p], r2[p], r3[p]
		}
	}
	for ; i < rows; i++ {
		src := a[(i0+i)*lda+p0 : (i0+i)*lda+p0+kc]
		for p, v := range src {
			dst[p*mr+i] = v
		}
	}
}

// packA12 packs twelve rows of A (row stride lda, from a[0]), kc columns, as dst[p*12+i]:
// twelve sequential reads feed each group of twelve adjacent writes, without bounds checks
// inside the loop (every row is resliced to the first one's length).
func packA12(a []float32, lda, kc int, dst []float32) {
	r0 := a[:kc]
	r1, r2, r3 := a[lda:lda+kc], a[2*lda:2*lda+kc], a[3*lda:3*lda+kc]
	r4, r5, r6 := a[4*lda:4*lda+kc], a[5*lda:5*lda+kc], a[6*lda:6*lda+kc]
	r7, r8, r9 := a[7*lda:7*lda+kc], a[8*lda:8*lda+kc], a[9*lda:9*lda+kc]
	r10, r11 := a[10*lda:10*lda+kc], a[11*lda:11*lda+kc]
	r1, r2, r3, r4, r5, r6 = r1[:len(r0)], r2[:len(r0)], r3[:len(r0)], r4[:len(r0)], r5[:len(r0)], r6[:len(r0)]
	r7, r8, r9, r10, r11 = r7[:len(r0)], r8[:len(r0)], r9[:len(r0)], r10[:len(r0)], r11[:len(r0)]
	dst = dst[:12*len(r0)]
	for p := range r0 {
		d := (*[12]float32)(dst[p*12:])
		d[0], d[1], d[2], d[3] = r0[p], r1[p], r2[p], r3[p]
		d[4], d[5], d[6], d[7] = r4[p], r5[p], r6[p], r7[p]
		d[8], d[9], d[10], d[11] = r8[p], r9[p], r10[p], r11[p]
	}
}

// packRows8 copies eight rows of a (row stride lda, from a[0]), kc columns, as
// dst[p*stride+i]: eight sequential reads feed each group of eight adjacent writes.
func packRows8(a []float32, lda, kc int, dst []float32, stride int) {
	r0 := a[:kc]
	r1, r2, r3 := a[lda:lda+kc], a[2*lda:2*lda+kc], a[3*lda:3*lda+kc]
	r4, r5, r6, r7 := a[4*lda:4*lda+kc], a[5*lda:5*lda+kc], a[6*lda:6*lda+kc], a[7*lda:7*lda+kc]
	r1, r2, r3, r4, r5, r6, r7 = r1[:len(r0)], r2[:len(r0)], r3[:len(r0)], r4[:len(r0)], r5[:len(r0)], r6[:len(r0)], r7[:len(r0)]
	for p := range r0 {
		d := (*[8]float32)(dst[p*stride:])
		d[0], d[1], d[2], d[3] = r0[p], r1[p], r2[p], r3[p]
		d[4], d[5], d[6], d[7] = r4[p], r5[p], r6[p], r7[p]
	}
}

// packB copies rows p0..p0+kc of op(B), columns j0..j0+cols, as dst[p*nr+j], zero-padded to nr.
func packB(trans bool, b []float32, ldb, p0, j0, kc, cols, nr int, dst []float32) {
	if cols < nr {
		clear(dst[:kc*nr])
	}
	if !trans {
		if vecCopyPanel(dst, nr, b[p0*ldb+j0:], ldb, cols, kc) {
			return
		}
		for p := 0; p < kc; p++ {
			src := b[(p0+p)*ldb+j0 : (p0+p)*ldb+j0+cols]
			copy(dst[p*nr:p*nr+cols], src)
		}
		return
	}
	// op(B)[p][j] = B[j][p]: eight rows of B at a time, as packA12 does twelve.
	j := 0
	for ; j+8 <= cols; j += 8 {
		packRows8(b[(j0+j)*ldb+p0:], ldb, kc, dst[j:], nr)
	}
	for ; j < cols; j++ {
		src := b[(j0+j)*ldb+p0 : (j0+j)*ldb+p0+kc]
		for p, v := range src {
			dst[p*nr+j] = v
		}
	}
}

// parallelFor runs fn over [0, n) split into contiguous chunks, one per worker.
func parallelFor(workers, n int, fn func(lo, hi int)) {
	if workers > n {
		workers = n
	}
	if workers <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	for w := 1; w < workers; w++ {
		lo, hi := w*n/workers, (w+1)*n/workers
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	fn(0, n/workers)
	wg.Wait()
}

// kernelGoSized is the portable micro-kernel for any mr, nr that are multiples of 4: 4×4
// sub-tiles with the sixteen sums in registers.
func kernelGoSized(mr, nr, kc int, a, b []float32, c []float32, ldc int, load bool) {
	for i0 := 0; i0 < mr; i0 += 4 {
		for j0 := 0; j0 < nr; j0 += 4 {
			var c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33 float32
			ai, bj := i0, j0
			for p := 0; p < kc; p++ {
				av := a[ai : ai+4 : ai+4]
				bv := b[bj : bj+4 : bj+4]
				a0, a1, a2, a3 := av[0], av[1], av[2], av[3]
				b0, b1, b2, b3 := bv[0], bv[1], bv[2], bv[3]
				c00 += a0 * b0
				c01 += a0 * b1
				c02 += a0 * b2
				c03 += a0 * b3
				c10 += a1 * b0
				c11 += a1 * b1
				c12 += a1 * b2
				c13 += a1 * b3
				c20 += a2 * b0
				c21 += a2 * b1
				c22 += a2 * b2
				c23 += a2 * b3
				c30 += a3 * b0
				c31 += a3 * b1
				c32 += a3 * b2
				c33 += a3 * b3
				ai += mr
				bj += nr
			}
			r := c[i0*ldc+j0:]
			if load {
				r[0] += c00
				r[1] += c01
				r[2] += c02
				r[3] += c03
				r[ldc] += c10
				r[ldc+1] += c11
				r[ldc+2] += c12
				r[ldc+3] += c13
				r[2*ldc] += c20
				r[2*ldc+1] += c21
				r[2*ldc+2] += c22
				r[2*ldc+3] += c23
				r[3*ldc] += c30
				r[3*ldc+1] += c31
				r[3*ldc+2] += c32
				r[3*ldc+3] += c33
			} else {
				r[0], r[1], r[2], r[3] = c00, c01, c02, c03
				r[ldc], r[ldc+1], r[ldc+2], r[ldc+3] = c10, c11, c12, c13
				r[2*ldc], r[2*ldc+1], r[2*ldc+2], r[2*ldc+3] = c20, c21, c22, c23
				r[3*ldc], r[3*ldc+1], r[3*ldc+2], r[3*ldc+3] = c30, c31, c32, c33
			}
		}
	}
}

// MatMul computes C = A·B for row-major A (m×k), B (k×n) and C (m×n) with the engine's
// kernel on every core. It is exported for benchmarks and tools.
func MatMul(m, n, k int, a, b, c []float32) error {
	if m < 0 || n < 0 || k < 0 || len(a) < m*k || len(b) < k*n || len(c) < m*n {
		return fmt.Errorf("matmul: slices too short for %d×%d · %d×%d", m, k, k, n)
	}
	sgemm(false, false, m, n, k, a, k, b, n, c, n, false)
	return nil
}
