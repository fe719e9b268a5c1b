package model

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
)

// kerasObjectOf reads a Keras {class_name, config} object (the Keras 3 module and
// registered_name aside) or the plain-string form of one, returning the class and its
// config keys.
func kerasObjectOf(v json.RawMessage) (class string, cfg map[string]json.RawMessage, err error) {
	cfg = map[string]json.RawMessage{}
	if json.Unmarshal(v, &class) == nil {
		return class, cfg, nil
	}
	var obj struct {
		ClassName string          `json:"class_name"`
		Config    json.RawMessage `json:"config"`
	}
	if err := json.Unmarshal(v, &obj); err != nil {
		return "", nil, err
	}
	if obj.ClassName == "" {
		return "", nil, fmt.Errorf("no class_name in %s", bytes.TrimSpace(v))
	}
	if !isNull(obj.Config) {
		if err := json.Unmarshal(obj.Config, &cfg); err != nil {
			return "", nil, fmt.Errorf("config of %s: %v", obj.ClassName, err)
		}
	}
	return obj.ClassName, cfg, nil
}

// normName folds the spellings of a Keras class or function name ("MaxNorm", "max_norm",
// "maxNorm") to one key.
func normName(s string) string { return strings.ToLower(strings.ReplaceAll(s, "_", "")) }

func jsonNumber(raw json.RawMessage) (float64, error) {
	var f float64
	err := json.Unmarshal(raw, &f)
	return f, err
}

// refuseExtra refuses the first (in name order) option left in cfg that is not null: an
// option pgtrain does not read would otherwise be silently dropped.
func refuseExtra(cfg map[string]json.RawMessage, what string) error {
	var extra []string
	for k, v := range cfg {
		if !isNull(v) {
			extra = append(extra, k)
		}
	}
	if len(extra) == 0 {
		return nil
	}
	sort.Strings(extra)
	return fmt.Errorf("%s: unsupported option %q", what, extra[0])
}

// kerasInitializerClasses are the supported initializers by Keras class name, with the
// options each takes besides seed.
var kerasInitializerClasses = map[string]struct {
	kind string
	opts []string
}{
	"glorotuniform":   {"glorot_uniform", nil},
	"glorotnormal":    {"glorot_normal", nil},
	"heuniform":       {"he_uniform", nil},
	"henormal":        {"he_normal", nil},
	"lecununiform":    {"lecun_uniform", nil},
	"lecunnormal":     {"lecun_normal", nil},
	"zeros":           {"zeros", nil},
	"zero":            {"zeros", nil},
	"ones":            {"ones", nil},
	"one":             {"ones", nil},
	"constant":        {"constant", []string{"value"}},
	"randomuniform":   {"random_uniform", []string{"minval", "maxval"}},
	"uniform":         {"random_uniform", []string{"minval", "maxval"}},
	"randomnormal":    {"random_normal", []string{"mean", "stddev"}},
	"normal":          {"random_normal", []string{"mean", "stddev"}},
	"truncatednormal": {"truncated_normal", []string{"mean", "stddev"}},
	"variancescaling": {"variance_scaling", []string{"scale", "mode", "distribution"}},
}

// tfjsInitializerValues maps the camelCase option values TF.js writes to Keras's.
var tfjsInitializerValues = map[string]string{"fanIn": "fan_in", "fanOut": "fan_out", "fanAvg": "fan_avg",
	"truncatedNormal": "truncated_normal", "untruncatedNormal": "untruncated_normal"}

// supportedInitializers names the classes an error lists.
const supportedInitializers = "GlorotUniform, GlorotNormal, HeUniform, HeNormal, LecunUniform, LecunNormal, " +
	"VarianceScaling, Zeros, Ones, Constant, RandomUniform, RandomNormal, TruncatedNormal"

// parseKerasInitializer reads {class_name, config} or a plain name, with Keras's defaults.
// An option it does not know is refused, not dropped.
func parseKerasInitializer(v json.RawMessage) (*Initializer, error) {
	class, cfg, err := kerasObjectOf(v)
	if err != nil {
		return nil, fmt.Errorf("invalid initializer: %v", err)
	}
	def, ok := kerasInitializerClasses[normName(class)]
	if !ok {
		return nil, fmt.Errorf("unsupported initializer %q (supported: %s)", class, supportedInitializers)
	}
	in := &Initializer{Kind: def.kind}
	switch in.Kind {
	case "random_uniform":
		in.Min, in.Max = -0.05, 0.05
	case "random_normal", "truncated_normal":
		in.Stddev = 0.05
	case "variance_scaling":
		in.Scale, in.Mode, in.Distribution = 1, "fan_in", "truncated_normal"
	}
	if raw, ok := cfg["seed"]; ok {
		delete(cfg, "seed")
		if !isNull(raw) {
			var seed float64
			if json.Unmarshal(raw, &seed) != nil || seed != math.Trunc(seed) || math.Abs(seed) > 1<<53 {
				return nil, fmt.Errorf("initializer %s: seed must be an integer", class)
			}
			s := int64(seed)
			in.Seed = &s
		}
	}
	for _, k := range def.opts {
		raw, ok := cfg[k]
		delete(cfg, k)
		if !ok || isNull(raw) {
			continue
		}
		if k == "mode" || k == "distribution" {
			var s string
			if json.Unmarshal(raw, &s) != nil {
				return nil, fmt.Errorf("initializer %s: option %q must be a string", class, k)
			}
			// TF.js writes camelCase values.
			if snake, ok := tfjsInitializerValues[s]; ok {
				s = snake
			}
			if k == "mode" {
				in.Mode = s
			} else {
				in.Distribution = s
			}
			continue
		}
		f, err := jsonNumber(raw)
		if err != nil {
			return nil, fmt.Errorf("initializer %s: option %q must be a number", class, k)
		}
		switch k {
		case "value":
			in.Value = f
		case "minval":
			in.Min = f
		case "maxval":
			in.Max = f
		case "mean":
			in.Mean = f
		case "stddev":
			in.Stddev = f
		case "scale":
			in.Scale = f
		}
	}
	if err := refuseExtra(cfg, "initializer "+class); err != nil {
		return nil, err
	}
	if err := in.check(); err != nil {
		return nil, err
	}
	return in, nil
}

// kerasInitializer is the exported {class_name, config} of an initializer, def when in is
// nil: the Keras class names TF.js also reads (LecunNormal and LecunUniform as the
// VarianceScaling they are, since TF.js spells those classes differently).
func kerasInitializer(in, def *Initializer) any {
	if in == nil {
		in = def
	}
	var seed any
	if in.Seed != nil {
		seed = *in.Seed
	}
	switch in.Kind {
	case "glorot_uniform":
		return kv{"class_name": "GlorotUniform", "config": kv{"seed": seed}}
	case "glorot_normal":
		return kv{"class_name": "GlorotNormal", "config": kv{"seed": seed}}
	case "he_uniform":
		return kv{"class_name": "HeUniform", "config": kv{"seed": seed}}
	case "he_normal":
		return kv{"class_name": "HeNormal", "config": kv{"seed": seed}}
	case "lecun_uniform":
		return kv{"class_name": "VarianceScaling", "config": kv{"scale": 1.0, "mode": "fan_in", "distribution": "uniform", "seed": seed}}
	case "lecun_normal":
		return kv{"class_name": "VarianceScaling", "config": kv{"scale": 1.0, "mode": "fan_in", "distribution": "truncated_normal", "seed": seed}}
	case "variance_scaling":
		return kv{"class_name": "VarianceScaling", "config": kv{"scale": in.Scale, "mode": in.Mode, "distribution": in.Distribution, "seed": seed}}
	case "zeros":
		return kv{"class_name": "Zeros", "config": kv{}}
	case "ones":
		return kv{"class_name": "Ones", "config": kv{}}
	case "constant":
		return kv{"class_name": "Constant", "config": kv{"value": in.Value}}
	case "random_uniform":
		return kv{"class_name": "RandomUniform", "config": kv{"minval": in.Min, "maxval": in.Max, "seed": seed}}
	case "random_normal":
		return kv{"class_name": "RandomNormal", "config": kv{"mean": in.Mean, "stddev": in.Stddev, "seed": seed}}
	default: // truncated_normal; check refuses every other kind
		return kv{"class_name": "TruncatedNormal", "config": kv{"mean": in.Mean, "stddev": in.Stddev, "seed": seed}}
	}
}

// initStream is the generator an initializer draws from: its own stream when the document
// seeded it, the model's otherwise.
func initStream(shared *rng, in *Initializer) *rng {
	if in != nil && in.Seed != nil {
		return newRNG(*in.Seed, streamInit)
	}
	return shared
}

// isKerasObject reports whether b is a JSON object with a class_name.
func isKerasObject(b []byte) bool {
	var probe struct {
		ClassName *string `json:"class_name"`
	}
	return json.Unmarshal(b, &probe) == nil && probe.ClassName != nil
}

// UnmarshalJSON reads pgtrain's form ({"kind": "random_uniform", "minval": -0.05, ...}) or
// a Keras {class_name, config} object.
func (in *Initializer) UnmarshalJSON(b []byte) error {
	if isKerasObject(b) {
		k, err := parseKerasInitializer(b)
		if err != nil {
			return err
		}
		*in = *k
		return nil
	}
	type plain Initializer
	var p plain
	if err := decodeStrict(b, &p); err != nil {
		return err
	}
	*in = Initializer(p)
	return nil
}
