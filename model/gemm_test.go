package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
)

// naiveGemm is the reference: float64 sums in k order.
func naiveGemm(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, accumulate bool) {
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			if accumulate {
				s = float64(c[i*ldc+j])
			}
			for p := 0; p < k; p++ {
				var av, bv float32
				if transA {
					av = a[p*lda+i]
				} else {
					av = a[i*lda+p]
				}
				if transB {
					bv = b[j*ldb+p]
				} else {
					bv = b[p*ldb+j]
				}
				s += float64(av) * float64(bv)
			}
			c[i*ldc+j] = float32(s)
		}
	}
}

func randSlice(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64())
	}
	return s
}

// kernels returns every kernel this machine can run.
func kernels() []gemmKernel {
	ks := []gemmKernel{goKernel}
	if k := selectKernel(); k.name != goKernel.name {
		ks = append(ks, availableAsmKernels()...)
	}
	return ks
}

func TestSgemmMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	shapes := [][3]int{{1, 1, 1}, {3, 5, 7}, {12, 32, 1}, {13, 33, 17}, {96, 64, 256}, {100, 70, 300}, {257, 10, 513}, {20, 50, 30}, {16, 64, 256}, {1, 200, 3}, {200, 1, 9}}
	for _, kern := range kernels() {
		for _, sh := range shapes {
			for _, ta := range []bool{false, true} {
				for _, tb := range []bool{false, true} {
					for _, acc := range []bool{false, true} {
						m, n, k := sh[0], sh[1], sh[2]
						name := fmt.Sprintf("%s/%dx%dx%d/tA=%v/tB=%v/acc=%v", kern.name, m, n, k, ta, tb, acc)
						a := randSlice(r, m*k)
						b := randSlice(r, k*n)
						lda, ldb := k, n
						if ta {
							lda = m
						}
						if tb {
							ldb = k
						}
						// C has a wider row stride than n to check ldc handling.
						ldc := n + 3
						c0 := randSlice(r, m*ldc)
						want := append([]float32(nil), c0...)
						naiveGemm(ta, tb, m, n, k, a, lda, b, ldb, want, ldc, acc)
						got := append([]float32(nil), c0...)
						withKernel(kern, func() { sgemm(ta, tb, m, n, k, a, lda, b, ldb, got, ldc, acc) })
						for i := 0; i < m; i++ {
							for j := 0; j < ldc; j++ {
								g, w := got[i*ldc+j], want[i*ldc+j]
								if j >= n {
									if g != c0[i*ldc+j] {
										t.Fatalf("%s: wrote outside C at (%d,%d)", name, i, j)
									}
									continue
								}
								if math.Abs(float64(g-w)) > 1e-4*math.Sqrt(float64(k)+1) {
									t.Fatalf("%s: C[%d,%d] = %v, want %v", name, i, j, g, w)
								}
							}
						}
					}
				}
			}
		}
	}
}

// withKernel runs fn with kern as the active kernel.
func withKernel(kern gemmKernel, fn func()) {
	saved := activeKernel
	activeKernel = kern
	defer func() { activeKernel = saved }()
	fn()
}

// The result must not depend on how the work is split over goroutines.
func TestSgemmDeterministicAcrossWorkers(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	m, n, k := 300, 130, 700
	a, b := randSlice(r, m*k), randSlice(r, k*n)
	ref := make([]float32, m*n)
	sgemmWorkers(1, false, true, m, n, k, a, k, b, k, ref, n, false, nil)
	for _, w := range []int{2, 3, 5, 8} {
		got := make([]float32, m*n)
		sgemmWorkers(w, false, true, m, n, k, a, k, b, k, got, n, false, nil)
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(ref[i]) {
				t.Fatalf("%d workers: C[%d] = %v, 1 worker gave %v", w, i, got[i], ref[i])
			}
		}
	}
}

// The epilogue sees every element of C once, after its products are final.
func TestSgemmEpilogueCoversEveryElementOnce(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, sh := range [][3]int{{300, 130, 700}, {5, 3, 2}, {97, 2100, 40}, {10, 10, 0}} {
		m, n, k := sh[0], sh[1], sh[2]
		a, b := randSlice(r, m*k), randSlice(r, k*n)
		ref := make([]float32, m*n)
		sgemmWorkers(1, false, false, m, n, k, a, k, b, n, ref, n, false, nil)
		for _, w := range []int{1, 2, 3} {
			got := make([]float32, m*n)
			seen := make([]int32, m*n)
			var mu sync.Mutex
			sgemmWorkers(w, false, false, m, n, k, a, k, b, n, got, n, false, func(r0, r1, c0, c1 int) {
				mu.Lock()
				defer mu.Unlock()
				for i := r0; i < r1; i++ {
					for j := c0; j < c1; j++ {
						if math.Float32bits(got[i*n+j]) != math.Float32bits(ref[i*n+j]) {
							t.Errorf("%v, %d workers: C[%d][%d] = %v when finished, want %v", sh, w, i, j, got[i*n+j], ref[i*n+j])
						}
						seen[i*n+j]++
					}
				}
			})
			for i, s := range seen {
				if s != 1 {
					t.Fatalf("%v, %d workers: C[%d] finished %d times, want once", sh, w, i, s)
				}
			}
		}
	}
}

func BenchmarkSgemm(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, sh := range [][3]int{{1024, 512, 512}, {1024, 512, 256}, {512, 512, 1024}, {256, 64, 64}} {
		m, n, k := sh[0], sh[1], sh[2]
		x, y, c := randSlice(r, m*k), randSlice(r, k*n), make([]float32, m*n)
		b.Run(fmt.Sprintf("%s/%dx%dx%d", activeKernel.name, m, n, k), func(b *testing.B) {
			for b.Loop() {
				sgemm(false, false, m, n, k, x, k, y, n, c, n, false)
			}
			b.ReportMetric(2*float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// xᵀ·dz and (dzᵀ·x)ᵀ are the same sums of the same products in the same order: a narrow
// layer's weight gradient may be computed either way (denseLayer.backward).
func TestSgemmSwappedOperandsSameBits(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, kern := range kernels() {
		for _, sh := range [][3]int{{300, 10, 700}, {512, 1, 1024}, {40, 7, 3}} {
			in, out, rows := sh[0], sh[1], sh[2]
			x, dz := randSlice(r, rows*in), randSlice(r, rows*out)
			want, swapped := make([]float32, in*out), make([]float32, out*in)
			withKernel(kern, func() {
				sgemmWorkers(2, true, false, in, out, rows, x, in, dz, out, want, out, false, nil)
				sgemmWorkers(2, true, false, out, in, rows, dz, out, x, in, swapped, in, false, nil)
			})
			for i := 0; i < in; i++ {
				for j := 0; j < out; j++ {
					if math.Float32bits(want[i*out+j]) != math.Float32bits(swapped[j*in+i]) {
						t.Fatalf("%s %v: [%d][%d] = %v one way, %v the other", kern.name, sh, i, j, want[i*out+j], swapped[j*in+i])
					}
				}
			}
		}
	}
}

// Kernels reading A unpacked (C one panel wide) or B unpacked (C one panel tall) sum the
// same products in the same order as the packed path.
func TestSgemmUnpackedSameBits(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for _, kern := range kernels() {
		if kern.fnRows == nil && kern.fnBRows == nil {
			continue
		}
		packed := kern
		packed.fnRows, packed.fnBRows = nil, nil
		for _, sh := range [][3]int{{300, 10, 700}, {25, 32, 300}, {1024, 10, 512}, {13, 1, 5}, {10, 512, 1024}, {12, 70, 300}, {5, 33, 7}, {12, 32, 3}} {
			for _, acc := range []bool{false, true} {
				m, n, k := sh[0], sh[1], sh[2]
				a, b, c0 := randSlice(r, m*k), randSlice(r, k*n), randSlice(r, m*n)
				want, got := append([]float32(nil), c0...), append([]float32(nil), c0...)
				withKernel(packed, func() { sgemmWorkers(2, false, false, m, n, k, a, k, b, n, want, n, acc, nil) })
				withKernel(kern, func() { sgemmWorkers(2, false, false, m, n, k, a, k, b, n, got, n, acc, nil) })
				for i := range want {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%s %v acc=%v: C[%d] = %v unpacked, %v packed", kern.name, sh, acc, i, got[i], want[i])
					}
				}
			}
		}
	}
}
