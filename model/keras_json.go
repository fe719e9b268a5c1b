package model

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
)

// kerasObject is the {class_name, config} pair Keras serialises every object as. Keras 3
// and tf.keras >= 2.13 add module, registered_name and build_config.
type kerasObject struct {
	ClassName   string          `json:"class_name"`
	Config      json.RawMessage `json:"config"`
	Module      string          `json:"module"`
	BuildConfig *struct {
		InputShape []json.RawMessage `json:"input_shape"`
	} `json:"build_config"`
}

type kerasModelDoc struct {
	kerasObject
	ModelConfig   json.RawMessage `json:"model_config"`
	CompileConfig json.RawMessage `json:"compile_config"`
	// TrainingConfig is tf.keras 2's compile settings, beside model_config in HDF5 files and
	// in the topology of their TF.js conversions.
	TrainingConfig json.RawMessage `json:"training_config"`
	KerasVersion   string          `json:"keras_version"`
}

type kerasSequentialConfig struct {
	Name            string            `json:"name"`
	Layers          []json.RawMessage `json:"layers"`
	BuildInputShape []json.RawMessage `json:"build_input_shape"`
}

func parseKerasTopology(doc []byte) (*Spec, error) {
	var d kerasModelDoc
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, &SpecError{Index: -1, Reason: "invalid Keras model document: " + err.Error()}
	}
	if d.ClassName == "" && len(d.ModelConfig) > 0 {
		// tensorflowjs converter output wraps the model as {"model_config": {...}, "training_config": ...}.
		s, err := parseKerasTopology(d.ModelConfig)
		if err != nil {
			return nil, err
		}
		if s.Compile == nil && !isNull(d.TrainingConfig) {
			if s.Compile, err = parseKerasTrainingConfig(d.TrainingConfig); err != nil {
				return nil, &SpecError{Index: -1, Reason: "training_config: " + err.Error()}
			}
		}
		return s, nil
	}
	switch d.ClassName {
	case "Sequential":
	case "":
		return nil, &SpecError{Index: -1, Reason: "the document has no class_name: expected a Keras model.to_json() document of a Sequential model"}
	default:
		return nil, &SpecError{Index: -1, Reason: fmt.Sprintf("unsupported model class %q: %v", d.ClassName, ErrNotSequential)}
	}
	var cfg kerasSequentialConfig
	cfgBytes := bytes.TrimSpace(d.Config)
	if len(cfgBytes) > 0 && cfgBytes[0] == '[' {
		// Keras before 2.2 wrote the layer list itself as the config.
		if err := json.Unmarshal(cfgBytes, &cfg.Layers); err != nil {
			return nil, &SpecError{Index: -1, Reason: "invalid Sequential config: " + err.Error()}
		}
	} else if err := json.Unmarshal(cfgBytes, &cfg); err != nil {
		return nil, &SpecError{Index: -1, Reason: "invalid Sequential config: " + err.Error()}
	}
	// An unsupported layer is named before any complaint about the input shape, which an
	// image model's layers would explain.
	for i, raw := range cfg.Layers {
		var obj kerasObject
		if json.Unmarshal(raw, &obj) != nil || obj.ClassName == "" || obj.ClassName == "InputLayer" {
			continue
		}
		if _, ok := kerasLayers[obj.ClassName]; !ok {
			var named struct {
				Name string `json:"name"`
			}
			_ = json.Unmarshal(obj.Config, &named)
			return nil, &SpecError{Index: i, Name: named.Name, Reason: fmt.Sprintf("unsupported layer class %q (supported: %s)", obj.ClassName, supportedLayers)}
		}
	}
	s := &Spec{Name: cfg.Name}
	if dim, ok, err := shapeDim(cfg.BuildInputShape); err != nil {
		return nil, &SpecError{Index: -1, Reason: "build_input_shape: " + err.Error()}
	} else if ok {
		s.InputDim = dim
	}
	if d.BuildConfig != nil && s.InputDim == 0 {
		if dim, ok, err := shapeDim(d.BuildConfig.InputShape); err != nil {
			return nil, &SpecError{Index: -1, Reason: "build_config.input_shape: " + err.Error()}
		} else if ok {
			s.InputDim = dim
		}
	}
	for i, raw := range cfg.Layers {
		l, dim, skip, err := parseKerasLayer(raw)
		if err != nil {
			err.Index = i
			return nil, err
		}
		if dim > 0 {
			if s.InputDim != 0 && s.InputDim != dim {
				return nil, &SpecError{Index: i, Name: l.Name, Reason: fmt.Sprintf("input shape [null, %d] contradicts [null, %d] given earlier", dim, s.InputDim)}
			}
			s.InputDim = dim
		}
		if skip {
			if len(s.Layers) > 0 {
				return nil, &SpecError{Index: i, Name: l.Name, Reason: "InputLayer must come first"}
			}
			continue
		}
		s.Layers = append(s.Layers, l)
	}
	if c := bytes.TrimSpace(d.CompileConfig); len(c) > 0 && !bytes.Equal(c, []byte("null")) {
		comp, err := parseKerasCompileConfig(c)
		if err != nil {
			return nil, &SpecError{Index: -1, Reason: "compile_config: " + err.Error()}
		}
		s.Compile = comp
	}
	return s, nil
}

// shapeDim reads a [null, d] shape; ok is false for an absent shape.
func shapeDim(shape []json.RawMessage) (dim int, ok bool, err error) {
	if len(shape) == 0 {
		return 0, false, nil
	}
	if len(shape) != 2 {
		return 0, false, fmt.Errorf("input shape must be [null, features], got %d dimensions", len(shape))
	}
	var d *float64
	if err := json.Unmarshal(shape[1], &d); err != nil || d == nil || *d <= 0 || *d != math.Trunc(*d) {
		return 0, false, fmt.Errorf("input shape must be [null, features] with a positive feature count")
	}
	return int(*d), true, nil
}

// layerConfig gives typed access to a Keras layer config and remembers which keys were read,
// so that every option left over can be checked.
type layerConfig struct {
	class string // the layer's Keras class name
	m     map[string]json.RawMessage
	used  map[string]bool
}

func (c *layerConfig) raw(key string) (json.RawMessage, bool) {
	c.used[key] = true
	v, ok := c.m[key]
	if !ok || isNull(v) {
		return nil, false
	}
	return v, true
}

func isNull(v json.RawMessage) bool {
	return len(v) == 0 || bytes.Equal(bytes.TrimSpace(v), []byte("null"))
}

// isDefaultish reports whether an unread option has a value that changes nothing: null,
// false, an empty list or object.
func isDefaultish(v json.RawMessage) bool {
	t := string(bytes.TrimSpace(v))
	return t == "null" || t == "false" || t == "[]" || t == "{}" || t == ""
}

func (c *layerConfig) str(key string) (string, bool, error) {
	v, ok := c.raw(key)
	if !ok {
		return "", false, nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", false, fmt.Errorf("option %q must be a string", key)
	}
	return s, true, nil
}

func (c *layerConfig) num(key string) (float64, bool, error) {
	v, ok := c.raw(key)
	if !ok {
		return 0, false, nil
	}
	var f float64
	if err := json.Unmarshal(v, &f); err != nil {
		return 0, false, fmt.Errorf("option %q must be a number", key)
	}
	return f, true, nil
}

func (c *layerConfig) boolean(key string, def bool) (bool, error) {
	v, ok := c.raw(key)
	if !ok {
		return def, nil
	}
	var b bool
	if err := json.Unmarshal(v, &b); err != nil {
		return false, fmt.Errorf("option %q must be a boolean", key)
	}
	return b, nil
}

// parseKerasLayer turns one {class_name, config} layer into a LayerSpec. dim is the input
// width the layer declares (0 if none); skip is true for an InputLayer.
func parseKerasLayer(raw json.RawMessage) (l LayerSpec, dim int, skip bool, serr *SpecError) {
	var obj kerasObject
	if err := json.Unmarshal(raw, &obj); err != nil {
		return l, 0, false, &SpecError{Reason: "invalid layer: " + err.Error()}
	}
	c := &layerConfig{class: obj.ClassName, m: map[string]json.RawMessage{}, used: map[string]bool{}}
	if !isNull(obj.Config) {
		if err := json.Unmarshal(obj.Config, &c.m); err != nil {
			return l, 0, false, &SpecError{Reason: "invalid layer config: " + err.Error()}
		}
	}
	name, _, _ := c.str("name")
	l.Name = name
	fail := func(err error) (LayerSpec, int, bool, *SpecError) {
		return l, 0, false, &SpecError{Name: name, Reason: err.Error()}
	}
	if err := checkDType(c); err != nil {
		return fail(err)
	}
	if tr, err := c.boolean("trainable", true); err != nil {
		return fail(err)
	} else if !tr {
		return fail(errors.New("trainable=false is not supported"))
	}
	dim, err := kerasInputDim(c)
	if err != nil {
		return fail(err)
	}
	// Options that carry no meaning for a float32 dense model.
	for _, k := range []string{"sparse", "ragged", "input_dtype", "autocast", "build_config"} {
		c.used[k] = true
	}
	// A Dropout seed cannot be honoured: masks come from the job's seed (the spec's "seed").
	if v, ok := c.raw("seed"); ok {
		return fail(fmt.Errorf("option \"seed\" = %s: pgtrain draws dropout masks from the job's seed (the spec field \"seed\"); set the layer's seed to null", strings.TrimSpace(string(v))))
	}
	switch parse, ok := kerasLayers[obj.ClassName]; {
	case obj.ClassName == "InputLayer":
		if dim == 0 {
			return fail(errors.New("InputLayer needs a [null, features] shape"))
		}
		skip = true
	case obj.ClassName == "":
		return fail(errors.New("layer has no class_name"))
	case !ok:
		return fail(fmt.Errorf("unsupported layer class %q (supported: %s)", obj.ClassName, supportedLayers))
	default:
		if err := parse(c, &l); err != nil {
			return fail(err)
		}
	}
	// Every option not read above must be one that changes nothing.
	var extra []string
	for k, v := range c.m {
		if !c.used[k] && !isDefaultish(v) {
			extra = append(extra, k)
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		return fail(fmt.Errorf("unsupported option %q in %s", extra[0], obj.ClassName))
	}
	return l, dim, skip, nil
}

// kerasInputDim reads the input width a layer's batch_input_shape, batch_shape or
// input_shape declares, 0 when it declares none.
func kerasInputDim(c *layerConfig) (int, error) {
	dim := 0
	for _, key := range []string{"batch_input_shape", "batch_shape"} {
		if v, ok := c.raw(key); ok {
			var shape []json.RawMessage
			if err := json.Unmarshal(v, &shape); err != nil {
				return 0, fmt.Errorf("%s: %v", key, err)
			}
			d, ok, err := shapeDim(shape)
			if err != nil {
				return 0, fmt.Errorf("%s: %v", key, err)
			}
			if ok {
				dim = d
			}
		}
	}
	if v, ok := c.raw("input_shape"); ok && dim == 0 {
		var shape []json.RawMessage
		if err := json.Unmarshal(v, &shape); err != nil || len(shape) != 1 {
			return 0, errors.New("input_shape must be [features]")
		}
		d, ok, err := shapeDim(append([]json.RawMessage{json.RawMessage("null")}, shape...))
		if err != nil {
			return 0, fmt.Errorf("input_shape: %v", err)
		}
		if ok {
			dim = d
		}
	}
	return dim, nil
}

// supportedLayers names the Keras layer classes an error lists.
const supportedLayers = "InputLayer, Dense, Dropout, BatchNormalization, Activation, LeakyReLU, ReLU, Softmax, ELU"

// kerasLayers reads the config of each supported Keras layer class (InputLayer aside) into
// a LayerSpec; the options it does not read must be ones that change nothing.
var kerasLayers = map[string]func(c *layerConfig, l *LayerSpec) error{
	"Dense":              parseKerasDense,
	"Dropout":            parseKerasDropout,
	"BatchNormalization": parseKerasBatchNorm,
	"Activation":         parseKerasActivationLayer,
	"LeakyReLU":          parseKerasLeakyReLU,
	"ReLU":               parseKerasReLU,
	"Softmax":            parseKerasSoftmax,
	"ELU":                parseKerasELU,
}

func parseKerasDense(c *layerConfig, l *LayerSpec) error {
	l.Type = LayerDense
	u, ok, e := c.num("units")
	if e != nil || !ok || u <= 0 || u != math.Trunc(u) {
		return fmt.Errorf(`%s needs a positive integer "units"`, c.class)
	}
	l.Units = int(u)
	var err error
	if l.Activation, err = kerasActivation(c); err != nil {
		return err
	}
	if l.UseBias, err = c.boolean("use_bias", true); err != nil {
		return err
	}
	if v, ok := c.raw("kernel_initializer"); ok {
		if l.KernelInitializer, err = parseKerasInitializer(v); err != nil {
			return fmt.Errorf("kernel_initializer: %v", err)
		}
	}
	if v, ok := c.raw("bias_initializer"); ok {
		if l.BiasInitializer, err = parseKerasInitializer(v); err != nil {
			return fmt.Errorf("bias_initializer: %v", err)
		}
	}
	for _, r := range []struct {
		key string
		dst **Regularizer
	}{{"kernel_regularizer", &l.KernelRegularizer}, {"bias_regularizer", &l.BiasRegularizer}, {"activity_regularizer", &l.ActivityRegularizer}} {
		if v, ok := c.raw(r.key); ok {
			if *r.dst, err = parseKerasRegularizer(v); err != nil {
				return fmt.Errorf("%s: %v", r.key, err)
			}
		}
	}
	for _, k := range []struct {
		key string
		dst **Constraint
	}{{"kernel_constraint", &l.KernelConstraint}, {"bias_constraint", &l.BiasConstraint}} {
		if v, ok := c.raw(k.key); ok {
			if *k.dst, err = parseKerasConstraint(v); err != nil {
				return fmt.Errorf("%s: %v", k.key, err)
			}
		}
	}
	return nil
}

func parseKerasDropout(c *layerConfig, l *LayerSpec) error {
	l.Type = LayerDropout
	r, ok, e := c.num("rate")
	if e != nil || !ok {
		return fmt.Errorf(`%s needs a numeric "rate"`, c.class)
	}
	l.Rate = r
	return nil
}

func parseKerasBatchNorm(c *layerConfig, l *LayerSpec) error {
	l.Type = LayerBatchNorm
	if v, ok := c.raw("axis"); ok {
		if !lastAxis(v) {
			return fmt.Errorf("unsupported option \"axis\" = %s: only the feature axis (-1 or 1) is supported", strings.TrimSpace(string(v)))
		}
	}
	var err error
	if l.Momentum, _, err = c.num("momentum"); err != nil {
		return err
	}
	if l.Epsilon, _, err = c.num("epsilon"); err != nil {
		return err
	}
	if l.Center, err = c.boolean("center", true); err != nil {
		return err
	}
	if l.Scale, err = c.boolean("scale", true); err != nil {
		return err
	}
	for key, want := range map[string]string{"beta_initializer": "zeros", "gamma_initializer": "ones",
		"moving_mean_initializer": "zeros", "moving_variance_initializer": "ones"} {
		if v, ok := c.raw(key); ok {
			in, err := parseKerasInitializer(v)
			if err != nil {
				return fmt.Errorf("%s: %v", key, err)
			}
			if in.Kind != want && !(in.Kind == "constant" && ((want == "zeros" && in.Value == 0) || (want == "ones" && in.Value == 1))) {
				return fmt.Errorf("unsupported option %q: only %s is supported", key, want)
			}
		}
	}
	c.used["fused"] = true // an implementation choice of tf.keras 2, same results
	return nil
}

func parseKerasActivationLayer(c *layerConfig, l *LayerSpec) error {
	l.Type = LayerActivation
	var err error
	l.Activation, err = kerasActivation(c)
	return err
}

func parseKerasLeakyReLU(c *layerConfig, l *LayerSpec) error {
	l.Type = LayerLeakyReLU
	l.Alpha = DefaultLeakyReLUAlpha
	for _, key := range []string{"alpha", "negative_slope"} {
		if a, ok, err := c.num(key); err != nil {
			return err
		} else if ok {
			l.Alpha = a
		}
	}
	return nil
}

// parseKerasReLU reads a ReLU layer, which with its defaults is the relu activation and with
// a negative slope and nothing else a leaky relu.
func parseKerasReLU(c *layerConfig, l *LayerSpec) error {
	_, hasMax, _ := c.num("max_value")
	th, _, _ := c.num("threshold")
	ns, _, _ := c.num("negative_slope")
	if hasMax || th != 0 {
		return errors.New("unsupported ReLU options: max_value and threshold must be unset")
	}
	if ns != 0 {
		l.Type = LayerLeakyReLU
		l.Alpha = ns
	} else {
		l.Type = LayerActivation
		l.Activation = ActReLU
	}
	return nil
}

func parseKerasSoftmax(c *layerConfig, l *LayerSpec) error {
	if v, ok := c.raw("axis"); ok && !lastAxis(v) {
		return fmt.Errorf("unsupported Softmax axis %s", strings.TrimSpace(string(v)))
	}
	l.Type = LayerActivation
	l.Activation = ActSoftmax
	return nil
}

func parseKerasELU(c *layerConfig, l *LayerSpec) error {
	if a, ok, _ := c.num("alpha"); ok && a != 1 {
		return fmt.Errorf("unsupported ELU alpha %v: only 1 is supported", a)
	}
	l.Type = LayerActivation
	l.Activation = ActELU
	return nil
}

func lastAxis(v json.RawMessage) bool {
	var n float64
	if json.Unmarshal(v, &n) == nil {
		return n == -1 || n == 1
	}
	var ns []float64
	if json.Unmarshal(v, &ns) == nil {
		return len(ns) == 1 && (ns[0] == -1 || ns[0] == 1)
	}
	return false
}

func checkDType(c *layerConfig) error {
	v, ok := c.raw("dtype")
	if !ok {
		return nil
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		if s != "float32" {
			return fmt.Errorf("unsupported dtype %q: only float32", s)
		}
		return nil
	}
	var pol struct {
		ClassName string `json:"class_name"`
		Config    struct {
			Name string `json:"name"`
		} `json:"config"`
	}
	if err := json.Unmarshal(v, &pol); err != nil {
		return fmt.Errorf("invalid dtype: %v", err)
	}
	if pol.Config.Name != "float32" {
		return fmt.Errorf("unsupported dtype policy %q: only float32", pol.Config.Name)
	}
	return nil
}

func kerasActivation(c *layerConfig) (string, error) {
	v, ok := c.raw("activation")
	if !ok {
		return ActLinear, nil
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		// Keras 3 may serialise a built-in activation as {"class_name": "function", "config": "relu"}.
		var obj struct {
			ClassName string          `json:"class_name"`
			Config    json.RawMessage `json:"config"`
		}
		if err := json.Unmarshal(v, &obj); err != nil || json.Unmarshal(obj.Config, &s) != nil {
			return "", fmt.Errorf("unsupported activation %s", strings.TrimSpace(string(v)))
		}
	}
	return canonicalActivation(s)
}

// parseKerasCompileConfig reads a Keras 3 compile_config.
func parseKerasCompileConfig(b []byte) (*Compile, error) {
	var cc struct {
		Optimizer       json.RawMessage   `json:"optimizer"`
		Loss            json.RawMessage   `json:"loss"`
		Metrics         []json.RawMessage `json:"metrics"`
		WeightedMetrics json.RawMessage   `json:"weighted_metrics"`
	}
	if err := json.Unmarshal(b, &cc); err != nil {
		return nil, err
	}
	// Refused, not dropped: the compiled metrics here are never weighted.
	if !isDefaultish(cc.WeightedMetrics) {
		return nil, fmt.Errorf("weighted_metrics are not supported")
	}
	c := &Compile{}
	if !isNull(cc.Optimizer) {
		o, err := parseKerasOptimizer(cc.Optimizer)
		if err != nil {
			return nil, fmt.Errorf("optimizer: %w", err)
		}
		c.Optimizer = o
	}
	if !isNull(cc.Loss) {
		var name string
		if json.Unmarshal(cc.Loss, &name) != nil {
			var obj kerasObject
			if err := json.Unmarshal(cc.Loss, &obj); err != nil {
				return nil, fmt.Errorf("loss: %v", err)
			}
			name = obj.ClassName
			var lc struct {
				FromLogits bool `json:"from_logits"`
			}
			_ = json.Unmarshal(obj.Config, &lc)
			c.FromLogits = lc.FromLogits
		}
		c.Loss = name
	}
	for _, m := range cc.Metrics {
		var name string
		if json.Unmarshal(m, &name) != nil {
			var obj kerasObject
			if err := json.Unmarshal(m, &obj); err != nil {
				return nil, fmt.Errorf("metrics: %v", err)
			}
			name = obj.ClassName
		}
		c.Metrics = append(c.Metrics, name)
	}
	if err := c.normalize(); err != nil {
		return nil, err
	}
	return c, nil
}

func parseKerasOptimizer(b []byte) (OptimizerConfig, error) {
	var o OptimizerConfig
	var name string
	cfg := map[string]json.RawMessage{}
	if json.Unmarshal(b, &name) != nil {
		var obj kerasObject
		if err := json.Unmarshal(b, &obj); err != nil {
			return o, err
		}
		name = obj.ClassName
		if !isNull(obj.Config) {
			if err := json.Unmarshal(obj.Config, &cfg); err != nil {
				return o, err
			}
		}
	}
	o.Name = name
	num := func(k string) (float64, bool) {
		var x float64
		if raw, ok := cfg[k]; ok && json.Unmarshal(raw, &x) == nil {
			return x, true
		}
		return 0, false
	}
	if raw, ok := cfg["learning_rate"]; ok && !isNull(raw) {
		var lr float64
		if json.Unmarshal(raw, &lr) == nil {
			o.LearningRate = lr
		} else {
			sch, err := parseKerasSchedule(raw)
			if err != nil {
				return o, fmt.Errorf("learning_rate: %w", err)
			}
			o.Schedule = sch
			o.LearningRate = sch.InitialLearningRate
		}
	}
	o.Momentum, _ = num("momentum")
	o.Beta1, _ = num("beta_1")
	o.Beta2, _ = num("beta_2")
	o.Epsilon, _ = num("epsilon")
	o.Rho, _ = num("rho")
	o.WeightDecay, _ = num("weight_decay")
	o.ClipNorm, _ = num("clipnorm")
	var nesterov bool
	if raw, ok := cfg["nesterov"]; ok {
		_ = json.Unmarshal(raw, &nesterov)
	}
	o.Nesterov = nesterov
	for _, k := range []string{"amsgrad", "centered", "use_ema", "global_clipnorm", "clipvalue", "gradient_accumulation_steps", "loss_scale_factor"} {
		if raw, ok := cfg[k]; ok && !isDefaultish(raw) {
			return o, fmt.Errorf("unsupported option %q", k)
		}
	}
	if err := o.normalize(); err != nil {
		return o, err
	}
	return o, nil
}
