package model

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// TF.js Layers format file names written by SaveTFJS.
const (
	TFJSModelFile  = "model.json"
	TFJSWeightFile = "group1-shard1of1.bin"
)

type tfjsModelJSON struct {
	Format          string              `json:"format"`
	GeneratedBy     string              `json:"generatedBy"`
	ConvertedBy     *string             `json:"convertedBy"`
	ModelTopology   json.RawMessage     `json:"modelTopology"`
	WeightsManifest []tfjsManifestGroup `json:"weightsManifest"`
	// UserDefinedMetadata is what LayersModel.getUserDefinedMetadata() returns in TF.js;
	// pgtrain keeps its ModelMeta under the key MetaKey.
	UserDefinedMetadata map[string]json.RawMessage `json:"userDefinedMetadata,omitempty"`
}

type tfjsManifestGroup struct {
	Paths   []string         `json:"paths"`
	Weights []tfjsWeightSpec `json:"weights"`
}

type tfjsWeightSpec struct {
	Name  string `json:"name"`
	Shape []int  `json:"shape"`
	DType string `json:"dtype"`
	// Quantization is set by the tensorflowjs converter when it quantised weights; pgtrain
	// reads only float32.
	Quantization json.RawMessage `json:"quantization,omitempty"`
}

// KerasJSON returns the model as a Keras Sequential document (the tf.keras 2 form TF.js reads:
// batch_input_shape on the first layer, string dtypes).
func (m *Sequential) KerasJSON() ([]byte, error) { return json.Marshal(m.kerasTopology()) }

type kv = map[string]any

func kerasInit(class string) kv { return kv{"class_name": class, "config": kv{}} }

func (m *Sequential) kerasTopology() kv {
	var layers []any
	for i, l := range m.layers {
		ls := l.spec()
		cfg := kv{"name": ls.Name, "trainable": true, "dtype": "float32"}
		class := ""
		switch ls.Type {
		case LayerDense:
			class = "Dense"
			act := ls.Activation
			cfg["units"] = ls.Units
			cfg["activation"] = act
			cfg["use_bias"] = ls.UseBias
			cfg["kernel_initializer"] = kerasInitializer(ls.KernelInitializer, glorotUniform)
			cfg["bias_initializer"] = kerasInitializer(ls.BiasInitializer, zerosInit)
			cfg["kernel_regularizer"] = kerasRegularizer(ls.KernelRegularizer)
			cfg["bias_regularizer"] = kerasRegularizer(ls.BiasRegularizer)
			cfg["activity_regularizer"] = kerasRegularizer(ls.ActivityRegularizer)
			cfg["kernel_constraint"] = kerasConstraint(ls.KernelConstraint)
			cfg["bias_constraint"] = kerasConstraint(ls.BiasConstraint)
		case LayerDropout:
			class = "Dropout"
			cfg["rate"] = ls.Rate
			cfg["noise_shape"] = nil
			cfg["seed"] = nil
		case LayerBatchNorm:
			class = "BatchNormalization"
			cfg["axis"] = -1
			cfg["momentum"] = ls.Momentum
			cfg["epsilon"] = ls.Epsilon
			cfg["center"] = ls.Center
			cfg["scale"] = ls.Scale
			cfg["beta_initializer"] = kerasInit("Zeros")
			cfg["gamma_initializer"] = kerasInit("Ones")
			cfg["moving_mean_initializer"] = kerasInit("Zeros")
			cfg["moving_variance_initializer"] = kerasInit("Ones")
			for _, k := range []string{"beta_regularizer", "gamma_regularizer", "beta_constraint", "gamma_constraint"} {
				cfg[k] = nil
			}
		case LayerActivation:
			class = "Activation"
			cfg["activation"] = ls.Activation
		case LayerLeakyReLU:
			class = "LeakyReLU"
			cfg["alpha"] = ls.Alpha
		}
		if i == 0 {
			cfg["batch_input_shape"] = []any{nil, m.inputDim}
		}
		layers = append(layers, kv{"class_name": class, "config": cfg})
	}
	return kv{
		"class_name":    "Sequential",
		"config":        kv{"name": m.spec.Name, "layers": layers},
		"keras_version": "tfjs-layers 4.22.0",
		"backend":       "tensor_flow.js",
	}
}

// tfjsCompatible reports the first layer TF.js cannot read as it is: activations TF.js
// lacks (leaky_relu as a Dense activation).
func (m *Sequential) tfjsCompatible() error {
	for i, l := range m.layers {
		ls := l.spec()
		if (ls.Type == LayerDense || ls.Type == LayerActivation) && ls.Activation == ActLeakyReLU {
			return &SpecError{Index: i, Name: ls.Name, Reason: "the leaky_relu activation has no TF.js equivalent; use a LeakyReLU layer"}
		}
	}
	return nil
}

// SaveTFJS writes dir/model.json and dir/group1-shard1of1.bin in the TF.js Layers format:
// the Keras topology and every weight as float32 little-endian, in manifest order. The
// directory is created if needed; files are written to temporary names and renamed.
func (m *Sequential) SaveTFJS(dir string) error {
	if err := m.tfjsCompatible(); err != nil {
		return fmt.Errorf("save tfjs: %w", err)
	}
	topo, err := json.Marshal(m.kerasTopology())
	if err != nil {
		return fmt.Errorf("save tfjs: %w", err)
	}
	var specs []tfjsWeightSpec
	n := 0
	for _, p := range m.params {
		specs = append(specs, tfjsWeightSpec{Name: p.name, Shape: p.shape, DType: "float32"})
		n += len(p.w)
	}
	buf := make([]byte, 0, 4*n)
	for _, p := range m.params {
		for _, v := range p.w {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
		}
	}
	doc := tfjsModelJSON{
		Format:          "layers-model",
		GeneratedBy:     "pgtrain",
		ModelTopology:   topo,
		WeightsManifest: []tfjsManifestGroup{{Paths: []string{TFJSWeightFile}, Weights: specs}},
	}
	js, err := json.MarshalIndent(doc, "", " ")
	if err != nil {
		return fmt.Errorf("save tfjs: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("save tfjs: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, TFJSWeightFile), buf); err != nil {
		return fmt.Errorf("save tfjs: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, TFJSModelFile), js); err != nil {
		return fmt.Errorf("save tfjs: %w", err)
	}
	return nil
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// LoadTFJS reads a TF.js Layers model (dir/model.json and its weight shards). The model is
// not compiled: call Compile to train it.
func LoadTFJS(dir string) (*Sequential, error) {
	js, err := os.ReadFile(filepath.Join(dir, TFJSModelFile))
	if err != nil {
		return nil, fmt.Errorf("load tfjs: %w", err)
	}
	return loadTFJS(js, func(path string) ([]byte, error) {
		clean := filepath.Clean(filepath.FromSlash(path))
		if filepath.IsAbs(clean) || strings.HasPrefix(clean, "..") {
			return nil, fmt.Errorf("weight path %q leaves the model directory", path)
		}
		return os.ReadFile(filepath.Join(dir, clean))
	})
}

// LoadTFJSFromMemory builds a model from a model.json document and a function returning the
// bytes of each weight path it names.
func LoadTFJSFromMemory(modelJSON []byte, shard func(path string) ([]byte, error)) (*Sequential, error) {
	return loadTFJS(modelJSON, shard)
}

func loadTFJS(js []byte, shard func(string) ([]byte, error)) (*Sequential, error) {
	var doc tfjsModelJSON
	if err := json.Unmarshal(js, &doc); err != nil {
		return nil, fmt.Errorf("load tfjs: model.json: %w", err)
	}
	if doc.Format != "" && doc.Format != "layers-model" {
		return nil, fmt.Errorf("load tfjs: format %q is not a Layers model", doc.Format)
	}
	if len(doc.ModelTopology) == 0 {
		return nil, errors.New("load tfjs: model.json has no modelTopology")
	}
	spec, err := ParseSpec(doc.ModelTopology)
	if err != nil {
		return nil, fmt.Errorf("load tfjs: %w", err)
	}
	m, err := New(spec, 0, Compile{}, 0)
	if err != nil {
		return nil, fmt.Errorf("load tfjs: %w", err)
	}
	var ws []Tensor
	for gi, g := range doc.WeightsManifest {
		var data []byte
		for _, p := range g.Paths {
			b, err := shard(p)
			if err != nil {
				return nil, fmt.Errorf("load tfjs: weights group %d: %w", gi, err)
			}
			data = append(data, b...)
		}
		off := 0
		for _, w := range g.Weights {
			if w.DType != "float32" && w.DType != "" {
				return nil, fmt.Errorf("load tfjs: weight %q has dtype %q, only float32 is supported", w.Name, w.DType)
			}
			if len(w.Quantization) > 0 && string(w.Quantization) != "null" {
				return nil, fmt.Errorf("load tfjs: weight %q is quantized, which is not supported", w.Name)
			}
			n := 1
			for _, d := range w.Shape {
				n *= d
			}
			if off+4*n > len(data) {
				return nil, fmt.Errorf("load tfjs: weights group %d is %d bytes, too short for %q", gi, len(data), w.Name)
			}
			vals := make([]float32, n)
			for i := range vals {
				vals[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[off+4*i:]))
			}
			off += 4 * n
			ws = append(ws, Tensor{Name: w.Name, Shape: w.Shape, Values: vals})
		}
		if off != len(data) {
			return nil, fmt.Errorf("load tfjs: weights group %d has %d bytes left over", gi, len(data)-off)
		}
	}
	if err := m.SetWeights(ws); err != nil {
		return nil, fmt.Errorf("load tfjs: %w", err)
	}
	return m, nil
}
