package model

import (
	"math"
	"math/rand/v2"
)

// rng is a seeded PCG generator whose state can be saved in a checkpoint.
type rng struct {
	src *rand.PCG
	r   *rand.Rand
}

// newRNG derives an independent stream from a seed and a purpose tag, so that, for example,
// the dropout stream does not depend on how many numbers initialisation drew.
func newRNG(seed int64, stream uint64) *rng {
	src := rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15^stream)
	return &rng{src: src, r: rand.New(src)}
}

func (g *rng) Float64() float64 { return g.r.Float64() }

func (g *rng) IntN(n int) int { return g.r.IntN(n) }

// keep draws whether dropout at rate keeps an element; the Dropout layer and DropoutStream
// both draw with it, so that their masks cannot drift apart.
func (g *rng) keep(rate float64) bool { return g.r.Float64() >= rate }

func (g *rng) NormFloat64() float64 { return g.r.NormFloat64() }

// truncNormal draws from N(0, 1) restricted to [-2, 2], as Keras's truncated normal.
func (g *rng) truncNormal() float64 {
	for {
		x := g.r.NormFloat64()
		if math.Abs(x) <= 2 {
			return x
		}
	}
}

func (g *rng) marshal() ([]byte, error) { return g.src.MarshalBinary() }

func (g *rng) unmarshal(b []byte) error { return g.src.UnmarshalBinary(b) }

// Random streams.
const (
	streamInit    = 1
	streamDropout = 2
	streamShuffle = 3
)
