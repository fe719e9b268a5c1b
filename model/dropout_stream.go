package model

// DropoutStream draws dropout masks exactly as a model's Dropout layers do for the same
// seed: one draw per element, layer by layer in forward order, row-major within a layer. A
// backend that applies dropout elsewhere takes its masks from here, so that dropout trains
// the same as on this engine and the masks stay deterministic and checkpointable whatever
// device runs the layers.
type DropoutStream struct{ g *rng }

// NewDropoutStream is the stream a model built from seed starts with.
func NewDropoutStream(seed int64) *DropoutStream {
	return &DropoutStream{g: newRNG(seed, streamDropout)}
}

// Fill writes the next mask of a layer with the given rate: 1 for a kept element, 0 for a
// dropped one.
func (s *DropoutStream) Fill(mask []float32, rate float64) {
	for i := range mask {
		if s.g.keep(rate) {
			mask[i] = 1
		} else {
			mask[i] = 0
		}
	}
}

// MarshalBinary captures the stream's position, for a checkpoint.
func (s *DropoutStream) MarshalBinary() ([]byte, error) { return s.g.marshal() }

// UnmarshalBinary restores a position saved by MarshalBinary.
func (s *DropoutStream) UnmarshalBinary(b []byte) error { return s.g.unmarshal(b) }
