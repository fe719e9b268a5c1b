package model

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// kerasDocLayers returns the layer list of a Keras document in any accepted form (to_json(),
// TF.js model.json, tensorflowjs_converter's model_config), InputLayer left out.
func kerasDocLayers(t *testing.T, doc []byte) []kerasObject {
	t.Helper()
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(doc, &probe); err != nil {
		t.Fatal(err)
	}
	if topo, ok := probe["modelTopology"]; ok {
		return kerasDocLayers(t, topo)
	}
	if mc, ok := probe["model_config"]; ok {
		return kerasDocLayers(t, mc)
	}
	var d struct {
		Config struct {
			Layers []kerasObject `json:"layers"`
		} `json:"config"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatal(err)
	}
	var out []kerasObject
	for _, l := range d.Config.Layers {
		if l.ClassName != "InputLayer" {
			out = append(out, l)
		}
	}
	return out
}

// canonicalInit is an initializer as the distribution it draws from: the named
// variance-scaling initializers as their VarianceScaling, "normal" as truncated_normal.
func canonicalInit(t *testing.T, v json.RawMessage) *Initializer {
	t.Helper()
	if isNull(v) {
		return nil
	}
	in, err := parseKerasInitializer(v)
	if err != nil {
		t.Fatalf("initializer %s: %v", v, err)
	}
	vs := map[string]Initializer{
		"glorot_uniform": {Scale: 1, Mode: "fan_avg", Distribution: "uniform"},
		"glorot_normal":  {Scale: 1, Mode: "fan_avg", Distribution: "truncated_normal"},
		"he_uniform":     {Scale: 2, Mode: "fan_in", Distribution: "uniform"},
		"he_normal":      {Scale: 2, Mode: "fan_in", Distribution: "truncated_normal"},
		"lecun_uniform":  {Scale: 1, Mode: "fan_in", Distribution: "uniform"},
		"lecun_normal":   {Scale: 1, Mode: "fan_in", Distribution: "truncated_normal"},
	}
	if e, ok := vs[in.Kind]; ok {
		e.Kind, e.Seed = "variance_scaling", in.Seed
		in = &e
	}
	if in.Distribution == "normal" {
		in.Distribution = "truncated_normal"
	}
	return in
}

// formKeys are options that say how a document is written, not what the layer computes:
// the input shape (compared through the model's input width), Keras 3's serialisation
// wrappers, and flags whose only accepted values change nothing.
var formKeys = map[string]bool{"batch_input_shape": true, "batch_shape": true, "input_shape": true,
	"sparse": true, "ragged": true, "synchronized": true, "fused": true, "noise_shape": true}

// sameLayerOption compares one option of an imported layer with the exported one.
func sameLayerOption(t *testing.T, key string, orig, exp json.RawMessage) bool {
	t.Helper()
	switch {
	case strings.HasSuffix(key, "_initializer"):
		return reflect.DeepEqual(canonicalInit(t, orig), canonicalInit(t, exp))
	case strings.HasSuffix(key, "_regularizer"):
		if isNull(orig) || isNull(exp) {
			return isNull(orig) && isNull(exp)
		}
		a, err1 := parseKerasRegularizer(orig)
		b, err2 := parseKerasRegularizer(exp)
		return err1 == nil && err2 == nil && *a == *b
	case strings.HasSuffix(key, "_constraint"):
		if isNull(orig) || isNull(exp) {
			return isNull(orig) && isNull(exp)
		}
		a, err1 := parseKerasConstraint(orig)
		b, err2 := parseKerasConstraint(exp)
		return err1 == nil && err2 == nil && *a == *b
	case key == "dtype":
		c := &layerConfig{m: map[string]json.RawMessage{"dtype": orig}, used: map[string]bool{}}
		return checkDType(c) == nil && string(exp) == `"float32"`
	case key == "activation":
		var a, b string
		_ = json.Unmarshal(exp, &b)
		if json.Unmarshal(orig, &a) != nil {
			c := &layerConfig{m: map[string]json.RawMessage{"activation": orig}, used: map[string]bool{}}
			a, _ = kerasActivation(c)
		}
		ca, err1 := canonicalActivation(a)
		cb, err2 := canonicalActivation(b)
		return err1 == nil && err2 == nil && ca == cb
	case key == "axis":
		return lastAxis(orig) && lastAxis(exp)
	}
	var a, b any
	if json.Unmarshal(orig, &a) != nil || json.Unmarshal(exp, &b) != nil {
		return false
	}
	if fa, ok := a.(float64); ok {
		fb, ok := b.(float64)
		return ok && (fa == fb || math.Abs(fa-fb) <= 1e-15*math.Abs(fa))
	}
	return reflect.DeepEqual(a, b)
}

// TestKerasRoundTrip imports each Keras fixture, exports the model, and compares every
// option of every layer with the original: an option pgtrain accepted is in the export
// with the same meaning (the forms of initializers, regularizers and constraints may
// change: L2 becomes L1L2 with l1 0, LecunNormal the VarianceScaling it is). The export
// must import again to the same layers.
func TestKerasRoundTrip(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "keras", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		if strings.Contains(f, "graph_model") {
			continue
		}
		n++
		t.Run(filepath.Base(f), func(t *testing.T) {
			doc, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			spec, err := ParseSpec(doc)
			if err != nil {
				t.Fatal(err)
			}
			m, err := New(spec, 0, Compile{}, 1)
			if err != nil {
				t.Fatal(err)
			}
			exp, err := m.KerasJSON()
			if err != nil {
				t.Fatal(err)
			}
			again, err := ParseSpec(exp)
			if err != nil {
				t.Fatalf("the export does not import: %v", err)
			}
			if !reflect.DeepEqual(again.Layers, m.Spec().Layers) || again.InputDim != spec.InputDim {
				t.Errorf("the export imports to other layers:\n%+v\nwant\n%+v", again.Layers, m.Spec().Layers)
			}
			orig, out := kerasDocLayers(t, doc), kerasDocLayers(t, exp)
			if len(orig) != len(out) {
				t.Fatalf("%d layers in the document, %d in the export", len(orig), len(out))
			}
			for i := range orig {
				if orig[i].ClassName != out[i].ClassName {
					t.Errorf("layer %d: class %s exported as %s", i, orig[i].ClassName, out[i].ClassName)
					continue
				}
				var oc, ec map[string]json.RawMessage
				if err := json.Unmarshal(orig[i].Config, &oc); err != nil {
					t.Fatal(err)
				}
				if err := json.Unmarshal(out[i].Config, &ec); err != nil {
					t.Fatal(err)
				}
				for k, v := range oc {
					if formKeys[k] {
						continue
					}
					if k == "negative_slope" { // Keras 3's LeakyReLU; TF.js reads alpha
						k = "alpha"
					}
					ev, ok := ec[k]
					if !ok {
						if !isDefaultish(v) {
							t.Errorf("layer %d %s: option %q = %s is not in the export", i, orig[i].ClassName, k, v)
						}
						continue
					}
					if !sameLayerOption(t, k, v, ev) {
						t.Errorf("layer %d %s: option %q = %s exported as %s", i, orig[i].ClassName, k, v, ev)
					}
				}
			}
		})
	}
	if n < 6 {
		t.Fatalf("only %d fixtures", n)
	}
}
