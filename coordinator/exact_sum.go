package coordinator

import (
	"math"
	"math/big"
	"math/bits"
)

// fixedSum is an exact sum of binary fractions m·2^pos (relative to the accumulator's
// smallest unit) in 32-bit chunks held in int64s, so carries can wait: every add puts less
// than 2^32 into a chunk, and an int64 takes 2^31 of those. Addition of integers is
// associative, so the total does not depend on the order of the adds, nor on how partial
// sums are merged: this is what makes the planned statistics independent of scan order.
type fixedSum struct {
	c    []int64
	adds int
}

const (
	chunkBits = 32
	chunkMask = 1<<chunkBits - 1
	// carryEvery adds, the chunks are carried well before an int64 could overflow.
	carryEvery = 1 << 30
	// A float64 is m·2^(pos-1074) with m < 2^53 and pos <= 2045, its square m²·2^(pos'-2148)
	// with pos' <= 4090; 2^63 such terms add 63 bits. Chunks cover that, plus the 5-chunk
	// reach of one add.
	valueChunks  = (2045+53+63)/chunkBits + 3
	squareChunks = (4090+106+63)/chunkBits + 5
	valueUnit    = 1074 // a value's pos counts from 2^-1074, the smallest subnormal
	squareUnit   = 2 * valueUnit
)

func newFixedSum(chunks int) fixedSum { return fixedSum{c: make([]int64, chunks)} }

// add64 adds (or subtracts) m·2^pos.
func (s *fixedSum) add64(m uint64, pos uint, neg bool) {
	i, sh := pos/chunkBits, pos%chunkBits
	lo, hi := m<<sh, m>>(64-sh) // a shift by 64 is 0 in Go
	c := s.c[i : i+3 : i+3]
	if neg {
		c[0] -= int64(lo & chunkMask)
		c[1] -= int64(lo >> chunkBits)
		c[2] -= int64(hi)
	} else {
		c[0] += int64(lo & chunkMask)
		c[1] += int64(lo >> chunkBits)
		c[2] += int64(hi)
	}
	s.count()
}

// add128 adds hi·2^64+lo times 2^pos.
func (s *fixedSum) add128(hi, lo uint64, pos uint) {
	i, sh := pos/chunkBits, pos%chunkBits
	top := hi >> (64 - sh)
	hi = hi<<sh | lo>>(64-sh)
	lo <<= sh
	c := s.c[i : i+5 : i+5]
	c[0] += int64(lo & chunkMask)
	c[1] += int64(lo >> chunkBits)
	c[2] += int64(hi & chunkMask)
	c[3] += int64(hi >> chunkBits)
	c[4] += int64(top)
	s.count()
}

func (s *fixedSum) count() {
	if s.adds++; s.adds == carryEvery {
		s.carry()
	}
}

// carry leaves every chunk but the top one in [0, 2^32).
func (s *fixedSum) carry() {
	for i := range len(s.c) - 1 {
		k := s.c[i] >> chunkBits
		s.c[i] -= k << chunkBits
		s.c[i+1] += k
	}
	s.adds = 0
}

// merge adds another partial sum of the same shape.
func (s *fixedSum) merge(o *fixedSum) {
	s.carry()
	for i, v := range o.c {
		s.c[i] += v
	}
	s.carry()
}

// int is the sum in units of the accumulator.
func (s *fixedSum) int() *big.Int {
	s.carry()
	x, chunk := new(big.Int), new(big.Int)
	for i := len(s.c) - 1; i >= 0; i-- {
		x.Lsh(x, chunkBits)
		x.Add(x, chunk.SetInt64(s.c[i]))
	}
	return x
}

// moments accumulates count, exact sum and exact sum of squares, min and max of the
// finite values of a column, and counts the others: nonFinite of them, nan of which NaN.
type moments struct {
	count     int64
	sum, sq   fixedSum
	min, max  float64
	nonFinite int64
	nan       int64
}

func newMoments() *moments {
	return &moments{sum: newFixedSum(valueChunks), sq: newFixedSum(squareChunks)}
}

func (m *moments) add(x float64) {
	b := math.Float64bits(x)
	exp, mant := uint(b>>52&0x7ff), b&(1<<52-1)
	if exp == 0x7ff {
		m.skip(mant != 0)
		return
	}
	m.observe(x)
	pos := uint(0) // subnormals: mant·2^-1074
	if exp != 0 {
		mant |= 1 << 52
		pos = exp - 1
	}
	if mant == 0 {
		return
	}
	// Without its trailing zeros the mantissa of a widened float32 has at most 24 bits, so
	// its square takes the one-word path.
	tz := uint(bits.TrailingZeros64(mant))
	mant >>= tz
	pos += tz
	m.sum.add64(mant, pos, b>>63 != 0)
	if hi, lo := bits.Mul64(mant, mant); hi == 0 {
		m.sq.add64(lo, 2*pos, false)
	} else {
		m.sq.add128(hi, lo, 2*pos)
	}
}

// skip counts a value left out of the statistics: NaN or ±Inf.
func (m *moments) skip(nan bool) {
	m.nonFinite++
	if nan {
		m.nan++
	}
}

// observe counts a finite x and keeps the extremes.
func (m *moments) observe(x float64) {
	if m.count == 0 {
		m.min, m.max = x, x
	} else {
		// -0 and 0 compare equal: prefer -0 as the minimum and 0 as the maximum, so the
		// result does not depend on which came first.
		if x < m.min || x == m.min && math.Signbit(x) {
			m.min = x
		}
		if x > m.max || x == m.max && !math.Signbit(x) {
			m.max = x
		}
	}
	m.count++
}

// moments32 adds float32 values to moments through one accumulator per binary exponent: a
// float32 is mant·2^(e-150) with mant < 2^24, so a bucket sums mantissas in an int64 and
// their squares in 128 bits, a few instructions per value, and fold moves the buckets
// into the exact sums. The result is the bits moments.add gives.
type moments32 struct {
	m          *moments
	sum        [255]int64
	sqLo, sqHi [255]uint64
	adds       int
}

// fold32Every adds, the buckets are folded: |sum| stays below 2^24·2^30.
const fold32Every = 1 << 30

func (a *moments32) add(b uint32) {
	e := b >> 23 & 0xff
	if e == 0xff {
		a.m.skip(b&(1<<23-1) != 0)
		return
	}
	a.m.observe(float64(math.Float32frombits(b)))
	mant := int64(b & (1<<23 - 1))
	if e != 0 {
		mant |= 1 << 23
	} else {
		e = 1 // subnormals: mant·2^-149
	}
	var c uint64
	a.sqLo[e], c = bits.Add64(a.sqLo[e], uint64(mant*mant), 0)
	a.sqHi[e] += c
	if b>>31 != 0 {
		mant = -mant
	}
	a.sum[e] += mant
	if a.adds++; a.adds == fold32Every {
		a.fold()
	}
}

// fold adds the buckets to the exact sums and empties them.
func (a *moments32) fold() {
	for e := 1; e < len(a.sum); e++ {
		// Bucket e holds multiples of 2^(e-150): 2^(e+924) in the value unit (2^-1074)
		// and 2^(2e+1848) in the square unit (2^-2148).
		if v := a.sum[e]; v != 0 {
			a.m.sum.add64(uint64(max(v, -v)), uint(e+924), v < 0)
		}
		if a.sqLo[e] != 0 || a.sqHi[e] != 0 {
			a.m.sq.add128(a.sqHi[e], a.sqLo[e], uint(2*e+1848))
		}
	}
	a.sum, a.sqLo, a.sqHi, a.adds = [255]int64{}, [255]uint64{}, [255]uint64{}, 0
}

// merge adds the moments of another part of the same column.
func (m *moments) merge(o *moments) {
	if o.count > 0 {
		if m.count == 0 {
			m.min, m.max = o.min, o.max
		} else {
			m.min = min(m.min, o.min) // math's min orders -0 below 0, max 0 above -0
			m.max = max(m.max, o.max)
		}
	}
	m.count += o.count
	m.nonFinite += o.nonFinite
	m.nan += o.nan
	m.sum.merge(&o.sum)
	m.sq.merge(&o.sq)
}

// meanStdDev are the mean and the population standard deviation, each the exact value
// rounded once to float64 (the variance is rounded to 256 bits before its square root).
func (m *moments) meanStdDev() (mean, stddev float64) {
	if m.count == 0 {
		return 0, 0
	}
	n := big.NewInt(m.count)
	s, q := m.sum.int(), m.sq.int()
	mean, _ = new(big.Rat).SetFrac(s, new(big.Int).Lsh(n, valueUnit)).Float64()
	// var = (n·Σx² − (Σx)²) / n², with Σx in units of 2^-1074 and Σx² in 2^-2148.
	num := new(big.Int).Mul(n, q)
	num.Sub(num, new(big.Int).Mul(s, s))
	den := new(big.Int).Lsh(new(big.Int).Mul(n, n), squareUnit)
	const prec = 256
	v := new(big.Float).SetPrec(prec).SetInt(num)
	v.Quo(v, new(big.Float).SetPrec(prec).SetInt(den))
	stddev, _ = v.Sqrt(v).Float64()
	return mean, stddev
}
