package tensorflow

import "math/rand/v2"

// dropoutStreamTag is the Go engine's tag for its dropout stream (trainer/model's
// newRNG(seed, streamDropout)): the generator is PCG seeded with (seed, 0x9e3779b97f4a7c15 ^
// tag). TestMaskStreamMatchesGoEngine fails if the two drift apart.
const dropoutStreamTag = 2

// maskStream draws dropout masks exactly as the Go engine does: one Float64 per element,
// layer by layer in forward order, row-major within a layer, an element kept when the
// draw is at least the rate. Feeding its masks to the graph makes dropout on TensorFlow
// train the same as on the Go engine, and keeps the masks deterministic and checkpointable
// whatever device TensorFlow runs on.
type maskStream struct {
	src *rand.PCG
	r   *rand.Rand
}

func newMaskStream(seed int64) *maskStream {
	src := rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15^dropoutStreamTag)
	return &maskStream{src: src, r: rand.New(src)}
}

// fill writes 1 for a kept element and 0 for a dropped one.
func (s *maskStream) fill(mask []float32, rate float64) {
	for i := range mask {
		if s.r.Float64() >= rate {
			mask[i] = 1
		} else {
			mask[i] = 0
		}
	}
}

func (s *maskStream) marshal() ([]byte, error) { return s.src.MarshalBinary() }

func (s *maskStream) unmarshal(b []byte) error { return s.src.UnmarshalBinary(b) }
