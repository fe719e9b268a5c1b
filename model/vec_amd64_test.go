//go:build amd64 && !purego

package model

import (
	"math"
	"math/rand/v2"
	"testing"
)

// withVec runs fn with the AVX-512 loops on or off.
func withVec(on bool, fn func()) {
	saved := vecAVX512
	vecAVX512 = on
	defer func() { vecAVX512 = saved }()
	fn()
}

// oddValues are random values with the ones a sign-bit test or a rounding could get wrong.
func oddValues(r *rand.Rand, n int) []float32 {
	special := []float32{0, float32(math.Copysign(0, -1)), 1e-40, -1e-40, float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), -float32(math.NaN()), 1e30, -1e30}
	s := make([]float32, n)
	for i := range s {
		if r.IntN(8) == 0 {
			s[i] = special[r.IntN(len(special))]
		} else {
			s[i] = float32(r.NormFloat64())
		}
	}
	return s
}

// sameBits compares bit for bit, except that any NaN equals any NaN: which operand's NaN an
// instruction passes on is not part of the arithmetic.
func sameBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) && !(got[i] != got[i] && want[i] != want[i]) {
			t.Fatalf("%s: [%d] = %v (%#x), the Go loop gives %v (%#x)", what, i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
		}
	}
}

// The vector loops give the Go loops' bits, tails and strides included, and touch nothing
// outside their block.
func TestVectorLoopsMatchGo(t *testing.T) {
	if !vecAVX512 {
		t.Skip("no AVX-512 on this machine")
	}
	r := rand.New(rand.NewPCG(11, 12))
	for _, cols := range []int{1, 7, 15, 16, 17, 32, 45, 512} {
		for _, rows := range []int{1, 3} {
			for _, withBias := range []bool{false, true} {
				for _, act := range []string{ActReLU, ActLinear} {
					ld := cols + 5
					z := oddValues(r, rows*ld)
					bias := newParam("d/bias", true, cols)
					copy(bias.w, oddValues(r, cols))
					d := &denseLayer{out: ld, act: activation{name: act}}
					if withBias {
						d.bias = bias
					}
					d.z = append([]float32(nil), z...)
					withVec(false, func() { d.finish(d.z, 0, rows, 0, cols) })
					want := d.z
					d.z = append([]float32(nil), z...)
					withVec(true, func() { d.finish(d.z, 0, rows, 0, cols) })
					sameBits(t, "dense "+act+" forward", d.z, want)
				}
			}
			ld := cols + 3
			y, dy := oddValues(r, rows*ld), oddValues(r, rows*ld)
			for _, sum := range []bool{false, true} {
				var dbWant, dbGot []float32
				if sum {
					dbWant, dbGot = make([]float32, cols), make([]float32, cols)
				}
				want := append([]float32(nil), dy...)
				for i := 0; i < rows; i++ {
					dr := want[i*ld : i*ld+cols]
					activation{name: ActReLU}.backward(dr, y[i*ld:i*ld+cols], nil, 1, cols)
					for j, v := range dbWant {
						dbWant[j] = v + dr[j]
					}
				}
				got := append([]float32(nil), dy...)
				if !vecReLUGrad(got, y, dbGot, rows, cols, ld) {
					t.Fatal("vecReLUGrad did nothing")
				}
				sameBits(t, "relu backward", got, want)
				sameBits(t, "bias gradient", dbGot, dbWant)
			}
		}
	}
	for _, n := range []int{1, 15, 16, 33, 1000} {
		for _, tfjs := range []bool{false, true} {
			cfg := OptimizerConfig{Name: OptAdam, LearningRate: 0.003, Beta1: 0.9, Beta2: 0.999, Epsilon: 1e-7, TFJSEpsilon: tfjs}
			run := func(vec bool) *param {
				p := newParam("w", true, n)
				rr := rand.New(rand.NewPCG(uint64(n), 1))
				copy(p.w, oddValues(rr, n))
				o := newOptimizer(cfg)
				o.initSlots([]*param{p})
				withVec(vec, func() {
					for step := 0; step < 3; step++ {
						copy(p.g, oddValues(rr, n))
						o.apply([]*param{p})
					}
				})
				return p
			}
			want, got := run(false), run(true)
			sameBits(t, "adam weights", got.w, want.w)
			sameBits(t, "adam m", got.slots[0], want.slots[0])
			sameBits(t, "adam v", got.slots[1], want.slots[1])
		}
	}
}
