package coordinator

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

// exactMoments is the reference: sums in big.Float wide enough to be exact.
func exactMoments(xs []float64) (mean, stddev float64) {
	const prec = 5000
	s, q := new(big.Float).SetPrec(prec), new(big.Float).SetPrec(prec)
	for _, x := range xs {
		v := new(big.Float).SetPrec(prec).SetFloat64(x)
		s.Add(s, v)
		q.Add(q, v.Mul(v, v))
	}
	n := new(big.Float).SetPrec(prec).SetInt64(int64(len(xs)))
	m := new(big.Float).SetPrec(prec).Quo(s, n)
	mean, _ = m.Float64()
	// var = Σx²/n − mean², exact at this precision for these inputs.
	v := new(big.Float).SetPrec(prec).Quo(q, n)
	v.Sub(v, new(big.Float).SetPrec(prec).Mul(m, m))
	v.SetPrec(256)
	stddev, _ = v.Sqrt(v).Float64()
	return mean, stddev
}

func momentsOf(xs []float64) *moments {
	m := newMoments()
	for _, x := range xs {
		m.add(x)
	}
	return m
}

func TestMomentsAreExactAndOrderFree(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	cases := map[string][]float64{
		"ones":       {1, 1, 1, 1},
		"sepal":      nil,
		"cancelling": {1e300, 1, -1e300, 3e-320, -2.5},
		"subnormals": {5e-324, 1e-310, -3e-320, 2.2250738585072014e-308},
		"huge":       {math.MaxFloat64, -math.MaxFloat64 / 3, 1e308, 7},
		"float32s":   nil,
		"mixed":      nil,
		"zeros":      {0, math.Copysign(0, -1), 0},
	}
	for i := 1; i <= 1000; i++ {
		cases["sepal"] = append(cases["sepal"], float64(i%10))
	}
	for range 5000 {
		cases["float32s"] = append(cases["float32s"], float64(float32(r.Float64()*2-1)))
		cases["mixed"] = append(cases["mixed"], (r.Float64()-0.3)*math.Pow(10, float64(r.IntN(40)-20)))
	}
	for name, xs := range cases {
		t.Run(name, func(t *testing.T) {
			wantMean, wantSD := exactMoments(xs)
			m := momentsOf(xs)
			mean, sd := m.meanStdDev()
			if mean != wantMean || sd != wantSD {
				t.Fatalf("mean %v stddev %v, want %v and %v", mean, sd, wantMean, wantSD)
			}
			// Another order, and the same values split in three parts merged in another
			// order, give the same bits.
			ys := append([]float64(nil), xs...)
			r.Shuffle(len(ys), func(i, j int) { ys[i], ys[j] = ys[j], ys[i] })
			a, b, c := momentsOf(ys[:len(ys)/3]), momentsOf(ys[len(ys)/3:len(ys)/2]), momentsOf(ys[len(ys)/2:])
			c.merge(a)
			c.merge(b)
			for _, o := range []*moments{momentsOf(ys), c} {
				mean2, sd2 := o.meanStdDev()
				if math.Float64bits(mean2) != math.Float64bits(mean) || math.Float64bits(sd2) != math.Float64bits(sd) ||
					math.Float64bits(o.min) != math.Float64bits(m.min) || math.Float64bits(o.max) != math.Float64bits(m.max) || o.count != m.count {
					t.Fatalf("reordered: mean %v stddev %v min %v max %v; in order %v %v %v %v", mean2, sd2, o.min, o.max, mean, sd, m.min, m.max)
				}
			}
		})
	}
	if m := momentsOf([]float64{0, math.Copysign(0, -1)}); !math.Signbit(m.min) || math.Signbit(m.max) {
		t.Fatalf("min %v max %v: want -0 and 0", m.min, m.max)
	}
	for _, x := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if m := momentsOf([]float64{1, x}); m.nonFinite != 1 || m.count != 1 || (m.nan == 1) != math.IsNaN(x) {
			t.Fatalf("%v: nonFinite %v count %d", x, m.nonFinite, m.count)
		}
	}
}

// The chunks are carried before they could overflow: start from the largest chunks
// carryEvery-1 adds can leave, and add past the carry.
func TestFixedSumCarries(t *testing.T) {
	s := newFixedSum(valueChunks)
	const most = int64(carryEvery-1) * chunkMask
	want := new(big.Int)
	for i := range s.c {
		s.c[i] = most
		want.Add(want, new(big.Int).Lsh(big.NewInt(most), uint(i*chunkBits)))
	}
	s.adds = carryEvery - 1
	m := uint64(1<<53 - 1)
	for range 1000 {
		s.add64(m, 2045, false)
		want.Add(want, new(big.Int).Lsh(new(big.Int).SetUint64(m), 2045))
	}
	if got := s.int(); got.Cmp(want) != 0 {
		t.Fatalf("sum %v, want %v", got, want)
	}
}

func BenchmarkMomentsAdd(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	xs := make([]float64, 4096)
	for i := range xs {
		xs[i] = float64(float32(r.Float64()*2 - 1))
	}
	m := newMoments()
	b.ResetTimer()
	for i := range b.N {
		m.add(xs[i%len(xs)])
	}
}

// The float4 way into the moments gives what adding each value widened to float64 gives,
// to the bit: subnormals, signed zeros and extremes included, folded at any point.
func TestMoments32IsMomentsOfTheWidenedValues(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	special := []uint32{0, 1 << 31, 1, 1<<31 | 1, 0x007fffff, 0x00800000, 0x7f7fffff, 0xff7fffff, 0x3f800000, 0xbf800000}
	tests := []struct {
		name   string
		values func() []uint32
		foldAt int // fold once after this many values too (0: only at the end)
	}{
		{name: "special values", values: func() []uint32 { return special }},
		{name: "random bit patterns", values: func() []uint32 {
			v := make([]uint32, 20000)
			for i := range v {
				v[i] = rng.Uint32()
			}
			return v
		}, foldAt: 7777},
		{name: "values of one scale", values: func() []uint32 {
			v := make([]uint32, 20000)
			for i := range v {
				v[i] = math.Float32bits(float32(rng.Float64()*2 - 1))
			}
			return v
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, got := newMoments(), newMoments()
			a := &moments32{m: got}
			for i, b := range tt.values() {
				want.add(float64(math.Float32frombits(b)))
				a.add(b)
				if i+1 == tt.foldAt {
					a.fold()
				}
			}
			a.fold()
			if got.count != want.count || got.nonFinite != want.nonFinite || got.nan != want.nan ||
				math.Float64bits(got.min) != math.Float64bits(want.min) || math.Float64bits(got.max) != math.Float64bits(want.max) ||
				got.sum.int().Cmp(want.sum.int()) != 0 || got.sq.int().Cmp(want.sq.int()) != 0 {
				t.Fatalf("count %d/%d, nonFinite %v/%v, min %v/%v, max %v/%v, sums %v/%v, squares %v/%v", got.count, want.count,
					got.nonFinite, want.nonFinite, got.min, want.min, got.max, want.max, got.sum.int(), want.sum.int(), got.sq.int(), want.sq.int())
			}
		})
	}
}

func BenchmarkMomentsFloat32(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 6))
	vals := make([]uint32, 4096)
	for i := range vals {
		vals[i] = math.Float32bits(float32(rng.Float64()*2 - 1))
	}
	b.Run("widened", func(b *testing.B) {
		m := newMoments()
		for i := range b.N {
			m.add(float64(math.Float32frombits(vals[i%len(vals)])))
		}
	})
	b.Run("per exponent", func(b *testing.B) {
		a := &moments32{m: newMoments()}
		for i := range b.N {
			a.add(vals[i%len(vals)])
		}
		a.fold()
	})
}
