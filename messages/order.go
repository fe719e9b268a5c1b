package messages

// RangeOrder is the order in which the trainer visits the training ranges in an epoch: a
// permutation of 0..n-1 that depends only on (seed, epoch). The coordinator uses the same
// function to lease only ranges inside the trainer's window. It uses its own generator
// (splitmix64) so that the order never changes with the Go version.
func RangeOrder(seed int64, epoch, n int) []int {
	return Permutation(n, NewRand(seed, uint64(epoch), 0x72616e6765).IntN) // "range"
}

// Permutation is a permutation of 0..n-1 by Fisher–Yates from the last element, the swap
// partner of element i drawn by intN(i+1). The range order, the trainer's row shuffle and
// model.Fit's shuffle all use it: their sequences (and so trained weights) depend only on
// the generator each passes.
func Permutation(n int, intN func(n int) int) []int {
	perm := make([]int, n)
	for i := range perm {
		perm[i] = i
	}
	for i := n - 1; i > 0; i-- {
		j := intN(i + 1)
		perm[i], perm[j] = perm[j], perm[i]
	}
	return perm
}

// Rand is a small deterministic generator (splitmix64) for the orders that must be a pure
// function of the job's seed and that the coordinator and the trainer both compute: the range
// order and the trainer's row shuffle. (The model's own draws, dropout masks among them,
// come from its checkpointed generator in model/rng.go.)
type Rand struct{ state uint64 }

// NewRand derives an independent stream from a seed and any number of stream labels.
func NewRand(seed int64, labels ...uint64) *Rand {
	r := &Rand{state: uint64(seed)}
	for _, l := range labels {
		r.state ^= l
		r.state = r.Uint64()
	}
	return r
}

// Uint64 returns the next 64 random bits.
func (r *Rand) Uint64() uint64 {
	r.state += 0x9e3779b97f4a7c15
	z := r.state
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// Uint64n returns a uniform value in [0, n) (n > 0), without modulo bias.
func (r *Rand) Uint64n(n uint64) uint64 {
	limit := -n % n // 2^64 mod n
	for {
		v := r.Uint64()
		if v >= limit {
			return v % n
		}
	}
}

// IntN returns a uniform value in [0, n) (n > 0).
func (r *Rand) IntN(n int) int { return int(r.Uint64n(uint64(n))) }

// Float32 returns a uniform value in [0, 1).
func (r *Rand) Float32() float32 { return float32(r.Uint64()>>40) / (1 << 24) }

// EpochOrder is the order in which the trainer reads ranges in an epoch: the training ranges
// in RangeOrder, then the validation ranges in key order. The coordinator leases the ranges
// of read pass p in EpochOrder(p), so fetchers work ahead of the trainer in its own order.
func (p *Plan) EpochOrder(epoch int) []int {
	train := p.TrainingRanges()
	order := RangeOrder(p.Spec.Seed, p.ModelEpoch(epoch), train)
	for r := train; r < len(p.Ranges); r++ {
		order = append(order, r)
	}
	return order
}
