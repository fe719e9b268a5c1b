package model

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Layer types of a LayerSpec.
const (
	LayerDense      = "dense"
	LayerDropout    = "dropout"
	LayerBatchNorm  = "batch_normalization"
	LayerActivation = "activation"
	LayerLeakyReLU  = "leaky_relu"
)

// Activation names, as Keras writes them (swish is also accepted as silu).
const (
	ActLinear    = "linear"
	ActReLU      = "relu"
	ActSigmoid   = "sigmoid"
	ActTanh      = "tanh"
	ActSoftmax   = "softmax"
	ActELU       = "elu"
	ActSELU      = "selu"
	ActGELU      = "gelu"
	ActSwish     = "swish"
	ActLeakyReLU = "leaky_relu"
)

// Default hyper-parameters of layers, as in Keras.
const (
	DefaultBNMomentum     = 0.99
	DefaultBNEpsilon      = 1e-3
	DefaultLeakyReLUAlpha = 0.3 // the LeakyReLU layer's negative slope
	// leakyReLUActivationSlope is the slope of the "leaky_relu" activation function
	// (keras.activations.leaky_relu), which differs from the layer's default.
	leakyReLUActivationSlope = 0.2
)

// Spec is a parsed model description: an ordered list of layers and, when the document
// says so, the input width and the compile settings.
type Spec struct {
	Name string
	// InputDim is the number of input features, 0 when the document has none.
	InputDim int
	Layers   []LayerSpec
	// Compile holds the document's compile settings (optimizer, loss, metrics): Keras 3's
	// compile_config, tf.keras 2's training_config or TF.js's trainingConfig; nil when the
	// document has none.
	Compile *Compile
}

// LayerSpec describes one layer. Fields that do not apply to Type are zero.
type LayerSpec struct {
	// Type is one of LayerDense, LayerDropout, LayerBatchNorm, LayerActivation, LayerLeakyReLU.
	Type string
	// Name is unique within the model; ParseSpec fills Keras-style names (dense, dense_1, ...)
	// for layers that have none.
	Name string
	// Dense.
	Units      int
	Activation string // Dense and Activation layers; "" means linear
	UseBias    bool
	// KernelInitializer and BiasInitializer are used by New; nil means glorot_uniform and zeros.
	KernelInitializer *Initializer
	BiasInitializer   *Initializer
	// Regularizers add their penalties to the training loss; nil means none. The activity
	// regularizer's penalty is on the layer's output, divided by the batch size, as Keras.
	KernelRegularizer, BiasRegularizer, ActivityRegularizer *Regularizer
	// Constraints project the weight after every optimizer step; nil means none.
	KernelConstraint, BiasConstraint *Constraint
	// Dropout.
	Rate float64
	// BatchNormalization.
	Momentum, Epsilon float64
	Center, Scale     bool
	// Alpha is the negative slope of a LeakyReLU layer (and of a leaky_relu activation).
	Alpha float64
}

// Initializer is a Keras weight initializer. Kind is one of "glorot_uniform",
// "glorot_normal", "he_uniform", "he_normal", "lecun_uniform", "lecun_normal",
// "variance_scaling", "zeros", "ones", "constant", "random_uniform", "random_normal",
// "truncated_normal".
type Initializer struct {
	Kind string `json:"kind"`
	// VarianceScaling.
	Scale        float64 `json:"scale,omitempty"`
	Mode         string  `json:"mode,omitempty"`         // fan_in, fan_out, fan_avg
	Distribution string  `json:"distribution,omitempty"` // truncated_normal, untruncated_normal, uniform
	// Constant, RandomUniform, RandomNormal, TruncatedNormal.
	Value  float64 `json:"value,omitempty"`
	Min    float64 `json:"minval,omitempty"`
	Max    float64 `json:"maxval,omitempty"`
	Mean   float64 `json:"mean,omitempty"`
	Stddev float64 `json:"stddev,omitempty"`
	// Seed, when set, draws this tensor from its own stream of that seed instead of the
	// model's, so the document's seeded initializer gives the same weights whatever the job
	// seed (pgtrain's generator, not TensorFlow's: the values differ from Keras's).
	Seed *int64 `json:"seed,omitempty"`
}

// SpecError is a problem with one layer of a model document.
type SpecError struct {
	Index  int    // position in the layer list, -1 for the document as a whole
	Name   string // layer name when the document has one
	Reason string
}

func (e *SpecError) Error() string {
	if e.Index < 0 {
		return e.Reason
	}
	if e.Name != "" {
		return fmt.Sprintf("layers[%d] %q: %s", e.Index, e.Name, e.Reason)
	}
	return fmt.Sprintf("layers[%d]: %s", e.Index, e.Reason)
}

// ErrNotSequential is returned for Keras documents of a model class other than Sequential.
var ErrNotSequential = errors.New("only Sequential models are supported")

// ParseSpec accepts pgtrain's layer list
//
//	{"name": "m", "input_dim": 16, "layers": [{"type": "dense", "units": 64, "activation": "relu"}, ...]}
//
// (name and input_dim optional), a Keras model.to_json() document in the tf.keras 2
// (legacy and >= 2.13) or Keras 3 form, or a TF.js model.json (whose modelTopology is the
// Keras document). Errors name the layer (index and name) and the unsupported class,
// activation or option.
func ParseSpec(doc []byte) (*Spec, error) {
	doc = bytes.TrimSpace(doc)
	if len(doc) == 0 {
		return nil, &SpecError{Index: -1, Reason: "empty model document"}
	}
	if doc[0] == '"' {
		// model.to_json() returns a string: a document pasted as that string is JSON in JSON.
		var inner string
		if err := json.Unmarshal(doc, &inner); err != nil {
			return nil, &SpecError{Index: -1, Reason: "invalid JSON string: " + err.Error()}
		}
		doc = bytes.TrimSpace([]byte(inner))
		if len(doc) == 0 || doc[0] != '{' {
			return nil, &SpecError{Index: -1, Reason: "a string model must hold a JSON object (the text model.to_json() returns)"}
		}
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(doc, &probe); err != nil {
		return nil, &SpecError{Index: -1, Reason: "invalid JSON: " + err.Error()}
	}
	if err := refuseGraphModel(probe); err != nil {
		return nil, err
	}
	var (
		s   *Spec
		err error
	)
	switch {
	case probe["modelTopology"] != nil:
		s, err = parseKerasTopology(probe["modelTopology"])
		if err == nil && s.Compile == nil && !isNull(probe["trainingConfig"]) {
			// TF.js's model.save() writes the compile settings beside the topology.
			if s.Compile, err = parseKerasTrainingConfig(probe["trainingConfig"]); err != nil {
				err = &SpecError{Index: -1, Reason: "trainingConfig: " + err.Error()}
			}
		}
	case probe["class_name"] != nil || probe["model_config"] != nil:
		s, err = parseKerasTopology(doc)
	case probe["layers"] != nil:
		s, err = parseLayerList(doc)
	default:
		return nil, &SpecError{Index: -1, Reason: `expected {"layers": [...]} or a Keras model.to_json() document`}
	}
	if err != nil {
		return nil, err
	}
	if err := s.finish(); err != nil {
		return nil, err
	}
	return s, nil
}

// Validate checks a Spec built by hand (ParseSpec output is already valid) and fills
// default layer names.
func (s *Spec) Validate() error { return s.finish() }

// finish fills default names and checks every layer.
func (s *Spec) finish() error {
	if len(s.Layers) == 0 {
		return &SpecError{Index: -1, Reason: "the model has no layers"}
	}
	if s.InputDim < 0 {
		return &SpecError{Index: -1, Reason: fmt.Sprintf("input_dim %d is negative", s.InputDim)}
	}
	if s.Name == "" {
		s.Name = "sequential"
	}
	used := map[string]bool{}
	for i := range s.Layers {
		if n := s.Layers[i].Name; n != "" {
			if used[n] {
				return &SpecError{Index: i, Name: n, Reason: "duplicate layer name"}
			}
			used[n] = true
		}
	}
	counters := map[string]int{}
	for i := range s.Layers {
		l := &s.Layers[i]
		if l.Name == "" {
			base := l.Type
			for {
				n := base
				if c := counters[base]; c > 0 {
					n = fmt.Sprintf("%s_%d", base, c)
				}
				counters[base]++
				if !used[n] {
					l.Name = n
					used[n] = true
					break
				}
			}
		}
		if err := l.check(); err != nil {
			return &SpecError{Index: i, Name: l.Name, Reason: err.Error()}
		}
	}
	hasParams := false
	for _, l := range s.Layers {
		if l.Type == LayerDense {
			hasParams = true
		}
	}
	if !hasParams {
		return &SpecError{Index: -1, Reason: "the model has no dense layer"}
	}
	return nil
}

func (l *LayerSpec) check() error {
	if strings.ContainsAny(l.Name, "/\x00") {
		return fmt.Errorf("layer name must not contain '/'")
	}
	if l.Type != LayerDense && (l.KernelInitializer != nil || l.BiasInitializer != nil || l.KernelRegularizer != nil ||
		l.BiasRegularizer != nil || l.ActivityRegularizer != nil || l.KernelConstraint != nil || l.BiasConstraint != nil) {
		return fmt.Errorf("initializers, regularizers and constraints apply to dense layers only, not %s", l.Type)
	}
	switch l.Type {
	case LayerDense:
		if l.Units <= 0 {
			return fmt.Errorf("dense units must be positive, got %d", l.Units)
		}
		a, err := canonicalActivation(l.Activation)
		if err != nil {
			return err
		}
		l.Activation = a
		if a == ActLeakyReLU && l.Alpha == 0 {
			l.Alpha = leakyReLUActivationSlope
		}
		for _, in := range []*Initializer{l.KernelInitializer, l.BiasInitializer} {
			if in != nil {
				if err := in.check(); err != nil {
					return err
				}
			}
		}
		for _, r := range []*Regularizer{l.KernelRegularizer, l.BiasRegularizer, l.ActivityRegularizer} {
			if r != nil {
				if err := r.check(); err != nil {
					return err
				}
			}
		}
		for _, c := range []*Constraint{l.KernelConstraint, l.BiasConstraint} {
			if c != nil {
				if err := c.check(); err != nil {
					return err
				}
			}
		}
	case LayerDropout:
		if !(l.Rate >= 0 && l.Rate < 1) {
			return fmt.Errorf("dropout rate must be in [0, 1), got %v", l.Rate)
		}
	case LayerBatchNorm:
		if l.Momentum == 0 {
			l.Momentum = DefaultBNMomentum
		}
		if l.Epsilon == 0 {
			l.Epsilon = DefaultBNEpsilon
		}
		if !(l.Momentum > 0 && l.Momentum < 1) {
			return fmt.Errorf("batch normalization momentum must be in (0, 1), got %v", l.Momentum)
		}
		if !(l.Epsilon > 0) {
			return fmt.Errorf("batch normalization epsilon must be positive, got %v", l.Epsilon)
		}
	case LayerActivation:
		a, err := canonicalActivation(l.Activation)
		if err != nil {
			return err
		}
		l.Activation = a
		if a == ActLeakyReLU && l.Alpha == 0 {
			l.Alpha = leakyReLUActivationSlope
		}
	case LayerLeakyReLU:
		if l.Alpha < 0 {
			return fmt.Errorf("leaky relu negative slope must not be negative, got %v", l.Alpha)
		}
	case "":
		return fmt.Errorf("layer type is missing")
	default:
		return fmt.Errorf("unsupported layer type %q", l.Type)
	}
	return nil
}

// canonicalActivation maps the accepted spellings to one name.
func canonicalActivation(a string) (string, error) {
	switch strings.ToLower(a) {
	case "", "linear", "none":
		return ActLinear, nil
	case "relu":
		return ActReLU, nil
	case "sigmoid":
		return ActSigmoid, nil
	case "tanh":
		return ActTanh, nil
	case "softmax":
		return ActSoftmax, nil
	case "elu":
		return ActELU, nil
	case "selu":
		return ActSELU, nil
	case "gelu":
		return ActGELU, nil
	case "swish", "silu":
		return ActSwish, nil
	case "leaky_relu", "leakyrelu":
		return ActLeakyReLU, nil
	}
	return "", fmt.Errorf("unsupported activation %q", a)
}

func (in *Initializer) check() error {
	switch in.Kind {
	case "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform",
		"lecun_normal", "zeros", "ones", "constant":
	case "variance_scaling":
		if in.Scale <= 0 {
			return fmt.Errorf("variance scaling initializer: scale must be positive")
		}
		switch in.Mode {
		case "fan_in", "fan_out", "fan_avg":
		default:
			return fmt.Errorf("variance scaling initializer: unsupported mode %q", in.Mode)
		}
		switch in.Distribution {
		case "truncated_normal", "untruncated_normal", "uniform", "normal":
		default:
			return fmt.Errorf("variance scaling initializer: unsupported distribution %q", in.Distribution)
		}
	case "random_uniform":
		if in.Max < in.Min {
			return fmt.Errorf("random uniform initializer: maxval < minval")
		}
	case "random_normal", "truncated_normal":
		if in.Stddev < 0 {
			return fmt.Errorf("%s initializer: negative stddev", in.Kind)
		}
	default:
		return fmt.Errorf("unsupported initializer %q", in.Kind)
	}
	return nil
}

// layerListDoc is pgtrain's own model form.
type layerListDoc struct {
	Name     string            `json:"name"`
	InputDim int               `json:"input_dim"`
	Layers   []json.RawMessage `json:"layers"`
}

type layerListEntry struct {
	Type       string   `json:"type"`
	Name       string   `json:"name"`
	Units      int      `json:"units"`
	Activation string   `json:"activation"`
	UseBias    *bool    `json:"use_bias"`
	Rate       *float64 `json:"rate"`
	Momentum   float64  `json:"momentum"`
	Epsilon    float64  `json:"epsilon"`
	Center     *bool    `json:"center"`
	Scale      *bool    `json:"scale"`
	Alpha      *float64 `json:"alpha"`
	// NegativeSlope is Keras 3's name for a LeakyReLU layer's alpha.
	NegativeSlope       *float64     `json:"negative_slope"`
	KernelInitializer   *Initializer `json:"kernel_initializer"`
	BiasInitializer     *Initializer `json:"bias_initializer"`
	KernelRegularizer   *Regularizer `json:"kernel_regularizer"`
	BiasRegularizer     *Regularizer `json:"bias_regularizer"`
	ActivityRegularizer *Regularizer `json:"activity_regularizer"`
	KernelConstraint    *Constraint  `json:"kernel_constraint"`
	BiasConstraint      *Constraint  `json:"bias_constraint"`
}

// decodeStrict decodes a JSON document into v, refusing fields v does not have.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func parseLayerList(doc []byte) (*Spec, error) {
	var d layerListDoc
	if err := decodeStrict(doc, &d); err != nil {
		return nil, &SpecError{Index: -1, Reason: "invalid layer list: " + err.Error()}
	}
	s := &Spec{Name: d.Name, InputDim: d.InputDim}
	for i, raw := range d.Layers {
		var e layerListEntry
		if err := decodeStrict(raw, &e); err != nil {
			var probe struct {
				Name string `json:"name"`
			}
			_ = json.Unmarshal(raw, &probe)
			return nil, &SpecError{Index: i, Name: probe.Name, Reason: "invalid layer: " + err.Error()}
		}
		l := LayerSpec{Name: e.Name, Units: e.Units, Activation: e.Activation, UseBias: true,
			Momentum: e.Momentum, Epsilon: e.Epsilon, Center: true, Scale: true,
			KernelInitializer: e.KernelInitializer, BiasInitializer: e.BiasInitializer,
			KernelRegularizer: e.KernelRegularizer, BiasRegularizer: e.BiasRegularizer, ActivityRegularizer: e.ActivityRegularizer,
			KernelConstraint: e.KernelConstraint, BiasConstraint: e.BiasConstraint}
		switch strings.ToLower(e.Type) {
		case "dense":
			l.Type = LayerDense
		case "dropout":
			l.Type = LayerDropout
		case "batch_normalization", "batchnormalization", "batch_norm", "batchnorm":
			l.Type = LayerBatchNorm
		case "activation":
			l.Type = LayerActivation
		case "leaky_relu", "leakyrelu":
			l.Type = LayerLeakyReLU
			l.Alpha = DefaultLeakyReLUAlpha
		case "":
			return nil, &SpecError{Index: i, Name: e.Name, Reason: `missing "type"`}
		default:
			return nil, &SpecError{Index: i, Name: e.Name, Reason: fmt.Sprintf("unsupported layer type %q", e.Type)}
		}
		if e.UseBias != nil {
			l.UseBias = *e.UseBias
		}
		if e.Center != nil {
			l.Center = *e.Center
		}
		if e.Scale != nil {
			l.Scale = *e.Scale
		}
		if e.Rate != nil {
			l.Rate = *e.Rate
		}
		if e.Alpha != nil {
			l.Alpha = *e.Alpha
		}
		if e.NegativeSlope != nil {
			l.Alpha = *e.NegativeSlope
		}
		if l.Type == LayerDropout && e.Rate == nil {
			return nil, &SpecError{Index: i, Name: e.Name, Reason: `dropout needs "rate"`}
		}
		s.Layers = append(s.Layers, l)
	}
	return s, nil
}
