package tensorflow

import (
	"errors"
	"slices"
	"testing"

	"pgtrain/model"
)

func sampleState() (*stateHeader, [][]float32) {
	h := &stateHeader{
		InputDim:   2,
		Layers:     []stateLayer{{Type: model.LayerDense, Name: "d", Units: 3}},
		Optimizer:  model.OptAdam,
		Slots:      []string{"m", "v"},
		Seed:       7,
		Iterations: 12,
		Dropout:    []byte{1, 2, 3},
		Tensors: []stateTensor{
			{Name: "d/kernel", Slot: 0, Shape: []int{2, 3}},
			{Name: "d/kernel", Slot: 1, Shape: []int{2, 3}},
			{Name: "d/kernel", Slot: 2, Shape: []int{2, 3}},
			{Name: "d/bias", Slot: 0, Shape: []int{3}},
		},
	}
	values := [][]float32{{1, 2, 3, 4, 5, 6}, {-1, 0, 1, 0.5, 0.25, 0}, {1e-8, 2, 3, 4, 5, 6}, {0.1, 0.2, 0.3}}
	return h, values
}

func TestStateRoundTrip(t *testing.T) {
	h, values := sampleState()
	b, err := encodeState(h, values)
	if err != nil {
		t.Fatal(err)
	}
	got, gotValues, err := decodeState(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := got.matches(h); err != nil {
		t.Fatal(err)
	}
	if got.Iterations != h.Iterations || got.Seed != h.Seed || !slices.Equal(got.Dropout, h.Dropout) {
		t.Fatalf("header %+v, want %+v", got, h)
	}
	for i := range values {
		if !slices.Equal(gotValues[i], values[i]) {
			t.Fatalf("tensor %d: %v, want %v", i, gotValues[i], values[i])
		}
	}
}

func TestEncodeStateRefusesWrongSizes(t *testing.T) {
	h, values := sampleState()
	values[3] = values[3][:2]
	if _, err := encodeState(h, values); err == nil {
		t.Fatal("encodeState accepted a tensor of the wrong size")
	}
	if _, err := encodeState(h, values[:2]); err == nil {
		t.Fatal("encodeState accepted fewer tensors than listed")
	}
}

func TestDecodeStateRefusesDamage(t *testing.T) {
	h, values := sampleState()
	good, err := encodeState(h, values)
	if err != nil {
		t.Fatal(err)
	}
	goEngine, err := goEngineCheckpoint()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name         string
		b            []byte
		wantMismatch bool
	}{
		{name: "empty", b: nil, wantMismatch: true},
		{name: "go engine checkpoint", b: goEngine, wantMismatch: true},
		{name: "truncated header", b: good[:len(stateMagic)+10]},
		{name: "truncated data", b: good[:len(good)-3]},
		{name: "trailing bytes", b: append(slices.Clone(good), 0, 0, 0, 0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := decodeState(tc.b)
			if err == nil {
				t.Fatal("decodeState accepted a damaged checkpoint")
			}
			if tc.wantMismatch && !errors.Is(err, ErrCheckpointMismatch) {
				t.Fatalf("decodeState = %v, want ErrCheckpointMismatch", err)
			}
		})
	}
}

func goEngineCheckpoint() ([]byte, error) {
	spec := &model.Spec{InputDim: 2, Layers: []model.LayerSpec{{Type: model.LayerDense, Name: "d", Units: 3, UseBias: true}}}
	m, err := model.New(spec, 2, model.Compile{Loss: "mse"}, 1)
	if err != nil {
		return nil, err
	}
	return m.MarshalCheckpoint()
}

func TestStateHeaderMatches(t *testing.T) {
	want, _ := sampleState()
	tests := []struct {
		name   string
		change func(h *stateHeader)
	}{
		{name: "input width", change: func(h *stateHeader) { h.InputDim = 3 }},
		{name: "layer units", change: func(h *stateHeader) { h.Layers[0].Units = 4 }},
		{name: "layer name", change: func(h *stateHeader) { h.Layers[0].Name = "e" }},
		{name: "optimizer", change: func(h *stateHeader) { h.Optimizer = model.OptRMSprop }},
		{name: "slots", change: func(h *stateHeader) { h.Slots = []string{"m"} }},
		{name: "tensor count", change: func(h *stateHeader) { h.Tensors = h.Tensors[:3] }},
		{name: "tensor shape", change: func(h *stateHeader) { h.Tensors[3].Shape = []int{4} }},
		{name: "tensor slot", change: func(h *stateHeader) { h.Tensors[1].Slot = 2 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := sampleState()
			tc.change(h)
			if err := h.matches(want); !errors.Is(err, ErrCheckpointMismatch) {
				t.Fatalf("matches = %v, want ErrCheckpointMismatch", err)
			}
		})
	}
	h, _ := sampleState()
	h.Iterations, h.Seed, h.Dropout = 99, 1, nil
	if err := h.matches(want); err != nil {
		t.Fatalf("step count, seed and dropout state are not part of the architecture: %v", err)
	}
}

func FuzzDecodeState(f *testing.F) {
	h, values := sampleState()
	good, err := encodeState(h, values)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte("PGTRAINTFCK1\x05\x00\x00\x00{}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, values, err := decodeState(b)
		if err != nil {
			return
		}
		// Whatever decodes must encode back to the same tensors.
		again, err := encodeState(h, values)
		if err != nil {
			t.Fatalf("decoded state does not encode: %v", err)
		}
		_, values2, err := decodeState(again)
		if err != nil {
			t.Fatal(err)
		}
		for i := range values {
			if len(values[i]) != len(values2[i]) {
				t.Fatalf("tensor %d changed size", i)
			}
		}
	})
}
