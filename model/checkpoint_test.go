package model

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// A run interrupted by a checkpoint and resumed in a fresh model ends bit-identical to an
// uninterrupted one: weights, moving statistics, Adam's moments and TF.js running products,
// the iteration count (for the schedule) and the dropout and shuffle generators all carry over.
func TestCheckpointResumesExactly(t *testing.T) {
	for _, opt := range []OptimizerConfig{
		{Name: "adam", LearningRate: 0.01, TFJSForm: true, Schedule: &Schedule{Kind: ScheduleCosine, DecaySteps: 20}},
		{Name: "sgd", LearningRate: 0.05, Momentum: 0.9, Nesterov: true},
		{Name: "rmsprop", Momentum: 0.3, ClipNorm: 1},
		{Name: "adamw"},
	} {
		t.Run(opt.Name, func(t *testing.T) {
			c := Compile{Loss: "categorical_crossentropy", Metrics: []string{"accuracy"}, Optimizer: opt}
			full, x, y := buildTest(t, fitSpec, 4, c, "onehot", 3, 50, 11)
			opts := FitOptions{Epochs: 2, BatchSize: 16, Shuffle: true}
			if _, err := full.Fit(x, y, 50, opts); err != nil {
				t.Fatal(err)
			}
			ckpt, err := full.MarshalCheckpoint()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := full.Fit(x, y, 50, opts); err != nil {
				t.Fatal(err)
			}
			// A model built with another seed and no compile settings takes everything from
			// the checkpoint.
			s, _ := ParseSpec([]byte(fitSpec))
			resumed, err := New(s, 4, Compile{}, 999)
			if err != nil {
				t.Fatal(err)
			}
			if err := resumed.UnmarshalCheckpoint(ckpt); err != nil {
				t.Fatal(err)
			}
			if resumed.Iterations() != 8 {
				t.Fatalf("resumed at iteration %d, want 8", resumed.Iterations())
			}
			if _, err := resumed.Fit(x, y, 50, opts); err != nil {
				t.Fatal(err)
			}
			sameWeights(t, full.Weights(), resumed.Weights())
			loaded, err := LoadCheckpoint(ckpt)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := loaded.Fit(x, y, 50, opts); err != nil {
				t.Fatal(err)
			}
			sameWeights(t, full.Weights(), loaded.Weights())
		})
	}
}

func TestCheckpointRejectsOtherModels(t *testing.T) {
	c := Compile{Loss: "mse"}
	a, _, _ := buildTest(t, `{"layers":[{"type":"dense","units":4},{"type":"dense","units":1}]}`, 3, c, "regression", 1, 1, 1)
	ckpt, err := a.MarshalCheckpoint()
	if err != nil {
		t.Fatal(err)
	}
	for _, spec := range []string{
		`{"layers":[{"type":"dense","units":5},{"type":"dense","units":1}]}`,
		`{"layers":[{"type":"dense","units":4},{"type":"dense","units":1},{"type":"dense","units":1}]}`,
		`{"layers":[{"type":"dense","units":4,"name":"x"},{"type":"dense","units":1}]}`,
	} {
		b, _, _ := buildTest(t, spec, 3, c, "regression", 1, 1, 1)
		before := b.Weights()
		if err := b.UnmarshalCheckpoint(ckpt); !errors.Is(err, ErrCheckpointMismatch) {
			t.Errorf("%s: error %v, want ErrCheckpointMismatch", spec, err)
		}
		sameWeights(t, before, b.Weights())
	}
	for _, bad := range [][]byte{nil, []byte("PGTRAINCKPT1"), ckpt[:len(ckpt)-4], append([]byte("XX"), ckpt...)} {
		if err := a.UnmarshalCheckpoint(bad); err == nil {
			t.Errorf("accepted a corrupt checkpoint of %d bytes", len(bad))
		}
	}
}

func FuzzUnmarshalCheckpoint(f *testing.F) {
	c := Compile{Loss: "mse", Optimizer: OptimizerConfig{Name: "adam"}}
	spec := `{"layers":[{"type":"dense","units":3},{"type":"batch_normalization"},{"type":"dense","units":1}]}`
	m, _, _ := buildTest(f, spec, 2, c, "regression", 1, 1, 1)
	ckpt, err := m.MarshalCheckpoint()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ckpt)
	f.Add(ckpt[:40])
	f.Fuzz(func(t *testing.T, b []byte) {
		target, _, _ := buildTest(t, spec, 2, c, "regression", 1, 1, 1)
		if err := target.UnmarshalCheckpoint(b); err != nil {
			return
		}
		// An accepted checkpoint leaves a model that trains.
		if _, err := target.TrainOnBatch([]float32{1, 2, 3, 4}, []float32{1, 0}, 2); err != nil && !strings.Contains(err.Error(), "loss is") {
			t.Fatal(err)
		}
	})
}

// Saving in the TF.js format and loading back gives the same weights, bit for bit.
func TestTFJSRoundTrip(t *testing.T) {
	spec := `{"name":"rt","layers":[{"type":"dense","units":5,"activation":"selu","name":"a"},{"type":"batch_normalization","scale":false},{"type":"dropout","rate":0.2},{"type":"leaky_relu","alpha":0.1},{"type":"activation","activation":"swish"},{"type":"dense","units":2,"use_bias":false,"activation":"softmax"}]}`
	m, x, _ := buildTest(t, spec, 3, Compile{}, "regression", 1, 6, 2)
	dir := filepath.Join(t.TempDir(), "model")
	if err := m.SaveTFJS(dir); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Format        string `json:"format"`
		ModelTopology struct {
			ClassName string `json:"class_name"`
			Config    struct {
				Layers []struct {
					ClassName string         `json:"class_name"`
					Config    map[string]any `json:"config"`
				} `json:"layers"`
			} `json:"config"`
		} `json:"modelTopology"`
		WeightsManifest []tfjsManifestGroup `json:"weightsManifest"`
	}
	b, err := os.ReadFile(filepath.Join(dir, TFJSModelFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Format != "layers-model" || doc.ModelTopology.ClassName != "Sequential" {
		t.Errorf("format %q, class %q", doc.Format, doc.ModelTopology.ClassName)
	}
	first := doc.ModelTopology.Config.Layers[0].Config
	if shape, _ := json.Marshal(first["batch_input_shape"]); string(shape) != "[null,3]" || first["dtype"] != "float32" {
		t.Errorf("first layer config %v", first)
	}
	var names []string
	for _, w := range doc.WeightsManifest[0].Weights {
		names = append(names, w.Name)
	}
	if got := strings.Join(names, " "); got != "a/kernel a/bias batch_normalization/beta batch_normalization/moving_mean batch_normalization/moving_variance dense/kernel" {
		t.Errorf("manifest %s", got)
	}
	back, err := LoadTFJS(dir)
	if err != nil {
		t.Fatal(err)
	}
	sameWeights(t, m.Weights(), back.Weights())
	p1, _ := m.Predict(x, 6)
	p2, _ := back.Predict(x, 6)
	for i := range p1 {
		if p1[i] != p2[i] {
			t.Fatalf("prediction %d: %v vs %v", i, p1[i], p2[i])
		}
	}
}

func TestLoadTFJSErrors(t *testing.T) {
	m, _, _ := buildTest(t, `{"layers":[{"type":"dense","units":2,"name":"d"}]}`, 2, Compile{}, "regression", 1, 1, 1)
	dir := t.TempDir()
	if err := m.SaveTFJS(dir); err != nil {
		t.Fatal(err)
	}
	modelJSON, _ := os.ReadFile(filepath.Join(dir, TFJSModelFile))
	shard, _ := os.ReadFile(filepath.Join(dir, TFJSWeightFile))
	tests := []struct {
		name    string
		edit    func(doc map[string]any)
		shard   []byte
		wantErr string
	}{
		{name: "short shard", shard: shard[:len(shard)-4], wantErr: "too short"},
		{name: "long shard", shard: append(append([]byte(nil), shard...), 0, 0, 0, 0), wantErr: "left over"},
		{name: "missing weight", edit: func(doc map[string]any) {
			g := doc["weightsManifest"].([]any)[0].(map[string]any)
			g["weights"] = g["weights"].([]any)[:1]
		}, shard: shard[:4*4], wantErr: `"d/bias" is missing`},
		{name: "renamed weight", edit: func(doc map[string]any) {
			w := doc["weightsManifest"].([]any)[0].(map[string]any)["weights"].([]any)[1].(map[string]any)
			w["name"] = "e/bias"
		}, shard: shard, wantErr: `"d/bias" is missing`},
		{name: "int weights", edit: func(doc map[string]any) {
			w := doc["weightsManifest"].([]any)[0].(map[string]any)["weights"].([]any)[1].(map[string]any)
			w["dtype"] = "int32"
		}, shard: shard, wantErr: "only float32"},
		{name: "escaping path", edit: func(doc map[string]any) {
			doc["weightsManifest"].([]any)[0].(map[string]any)["paths"] = []any{"../x.bin"}
		}, shard: shard, wantErr: "leaves the model directory"},
		{name: "graph model", edit: func(doc map[string]any) { doc["format"] = "graph-model" }, shard: shard, wantErr: "not a Layers model"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var doc map[string]any
			if err := json.Unmarshal(modelJSON, &doc); err != nil {
				t.Fatal(err)
			}
			if tt.edit != nil {
				tt.edit(doc)
			}
			d := t.TempDir()
			b, _ := json.Marshal(doc)
			if err := os.WriteFile(filepath.Join(d, TFJSModelFile), b, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d, TFJSWeightFile), tt.shard, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := LoadTFJS(d)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
		})
	}
	// Weights are float32 little-endian in manifest order.
	if got := math.Float32frombits(binary.LittleEndian.Uint32(shard)); got != m.Weights()[0].Values[0] {
		t.Errorf("first shard value %v, first kernel value %v", got, m.Weights()[0].Values[0])
	}
	lr, _, _ := buildTest(t, `{"layers":[{"type":"dense","units":2,"activation":"leaky_relu"}]}`, 2, Compile{}, "regression", 1, 1, 1)
	if err := lr.SaveTFJS(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no TF.js equivalent") {
		t.Errorf("leaky_relu activation export: %v", err)
	}
}

// hugeHeaderCheckpoint claims a model of inputs × units weights and holds none of them.
func hugeHeaderCheckpoint(t testing.TB, inputs, units int) []byte {
	h := checkpointHeader{Spec: checkpointSpec{InputDim: inputs, Layers: []LayerSpec{{Type: LayerDense, Units: units}}}}
	b, err := EncodeCheckpoint(checkpointMagic, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The header is untrusted: a checkpoint of a few bytes whose header claims a wide model must
// be refused before the model is allocated.
func TestLoadCheckpointRefusesWeightsItDoesNotHold(t *testing.T) {
	for _, tc := range []struct{ inputs, units int }{
		{1 << 12, 1 << 13}, // 2^25 weights: the old decoder allocated 256 MB for them
		{1 << 40, 1 << 30}, // the product overflows
		{3, math.MaxInt},
	} {
		b := hugeHeaderCheckpoint(t, tc.inputs, tc.units)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := LoadCheckpoint(b)
		runtime.ReadMemStats(&after)
		if err == nil {
			t.Fatalf("%d inputs × %d units with no values: loaded", tc.inputs, tc.units)
		}
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
			t.Fatalf("%d inputs × %d units: a %d-byte checkpoint allocated %d bytes before it was refused", tc.inputs, tc.units, len(b), grew)
		}
	}
}

func FuzzLoadCheckpoint(f *testing.F) {
	m, _, _ := buildTest(f, `{"layers":[{"type":"dense","units":3},{"type":"batch_normalization"},{"type":"dense","units":1}]}`,
		2, Compile{Loss: "mse"}, "regression", 1, 1, 1)
	ckpt, err := m.MarshalCheckpoint()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ckpt)
	f.Add(hugeHeaderCheckpoint(f, 1<<12, 1<<13))
	f.Add(hugeHeaderCheckpoint(f, 1<<40, 1<<30))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = LoadCheckpoint(b) // must not panic nor allocate what b does not hold
	})
}
