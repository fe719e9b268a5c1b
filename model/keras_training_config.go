package model

import (
	"encoding/json"
	"fmt"
	"strings"
)

// refuseGraphModel explains a TF.js graph model (tensorflowjs_converter's output for a
// SavedModel or a frozen graph): it holds a GraphDef, not the Keras layers pgtrain trains.
func refuseGraphModel(probe map[string]json.RawMessage) error {
	var format string
	_ = json.Unmarshal(probe["format"], &format)
	graph := format == "graph-model" || probe["node"] != nil
	if topo := probe["modelTopology"]; !graph && !isNull(topo) {
		var t map[string]json.RawMessage
		if json.Unmarshal(topo, &t) == nil && (t["node"] != nil || t["versions"] != nil && t["class_name"] == nil) {
			graph = true
		}
	}
	if !graph {
		return nil
	}
	return &SpecError{Index: -1, Reason: "this is a TF.js graph model (format \"graph-model\"), which holds a TensorFlow graph, not Keras layers: " +
		"give the Keras model.to_json() document, or a TF.js Layers model (tensorflowjs_converter --output_format tfjs_layers_model, " +
		"or tfjs.converters.save_keras_model)"}
}

// parseKerasTrainingConfig reads tf.keras 2's training_config (in HDF5 files and their TF.js
// conversions) and TF.js's trainingConfig: loss, metrics and optimizer_config, the last
// with TF.js's camelCase options and optimizer class names.
func parseKerasTrainingConfig(b json.RawMessage) (*Compile, error) {
	var tc struct {
		Loss            json.RawMessage `json:"loss"`
		Metrics         json.RawMessage `json:"metrics"`
		WeightedMetrics json.RawMessage `json:"weighted_metrics"`
		LossWeights     json.RawMessage `json:"loss_weights"`
		SampleWeightMod json.RawMessage `json:"sample_weight_mode"`
		OptimizerConfig json.RawMessage `json:"optimizer_config"`
	}
	if err := json.Unmarshal(b, &tc); err != nil {
		return nil, err
	}
	if !isDefaultish(tc.WeightedMetrics) {
		return nil, fmt.Errorf("weighted_metrics are not supported")
	}
	if !isDefaultish(tc.LossWeights) {
		return nil, fmt.Errorf("loss_weights are not supported (the model has one output)")
	}
	if !isDefaultish(tc.SampleWeightMod) {
		return nil, fmt.Errorf("sample_weight_mode is not supported")
	}
	cc := map[string]any{}
	if !isNull(tc.Loss) {
		cc["loss"] = tc.Loss
	}
	if ms, err := flattenMetrics(tc.Metrics); err != nil {
		return nil, err
	} else if len(ms) > 0 {
		cc["metrics"] = ms
	}
	if !isNull(tc.OptimizerConfig) {
		o, err := kerasOptimizerFromTFJS(tc.OptimizerConfig)
		if err != nil {
			return nil, fmt.Errorf("optimizer_config: %w", err)
		}
		cc["optimizer"] = o
	}
	doc, err := json.Marshal(cc)
	if err != nil {
		return nil, err
	}
	return parseKerasCompileConfig(doc)
}

// flattenMetrics reads the metrics of a training_config: names, {class_name, config}
// objects (tf.keras 2 writes MeanMetricWrapper objects, named in their config), or a list
// of those per output (one output here).
func flattenMetrics(raw json.RawMessage) ([]string, error) {
	if isNull(raw) {
		return nil, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		var one string
		if json.Unmarshal(raw, &one) != nil {
			return nil, fmt.Errorf("metrics: want a list, got %s", strings.TrimSpace(string(raw)))
		}
		return []string{one}, nil
	}
	var out []string
	for _, it := range items {
		var name string
		if json.Unmarshal(it, &name) == nil {
			out = append(out, name)
			continue
		}
		var nested []json.RawMessage
		if json.Unmarshal(it, &nested) == nil {
			b, _ := json.Marshal(nested)
			ms, err := flattenMetrics(b)
			if err != nil {
				return nil, err
			}
			out = append(out, ms...)
			continue
		}
		var obj struct {
			ClassName string `json:"class_name"`
			Config    struct {
				Name string `json:"name"`
				Fn   string `json:"fn"`
			} `json:"config"`
		}
		if err := json.Unmarshal(it, &obj); err != nil {
			return nil, fmt.Errorf("metrics: %v", err)
		}
		switch {
		case obj.Config.Name != "":
			out = append(out, obj.Config.Name)
		case obj.Config.Fn != "":
			out = append(out, obj.Config.Fn)
		default:
			out = append(out, obj.ClassName)
		}
	}
	return out, nil
}

// tfjsOptimizerOptions maps TF.js's optimizer options to Keras's.
var tfjsOptimizerOptions = map[string]string{"learningRate": "learning_rate", "beta1": "beta_1", "beta2": "beta_2", "useNesterov": "nesterov"}

// kerasOptimizerFromTFJS rewrites a TF.js optimizer config ({class_name: "Adam"|"SGD"|
// "Momentum"|"RMSProp", config: {learningRate, ...}}) into Keras's form; a Keras one passes
// through, its legacy "decay" refused unless 0.
func kerasOptimizerFromTFJS(raw json.RawMessage) (json.RawMessage, error) {
	class, cfg, err := kerasObjectOf(raw)
	if err != nil {
		return nil, err
	}
	out := map[string]json.RawMessage{}
	for k, v := range cfg {
		if kk, ok := tfjsOptimizerOptions[k]; ok {
			k = kk
		}
		out[k] = v
	}
	if d, ok := out["decay"]; ok {
		delete(out, "decay")
		if strings.EqualFold(class, "RMSProp") {
			if _, hasRho := out["rho"]; !hasRho {
				out["rho"] = d // TF.js's RMSProp calls rho "decay"
			}
		} else if f, err := jsonNumber(d); !isNull(d) && (err != nil || f != 0) {
			return nil, fmt.Errorf("the legacy learning rate decay %s is not supported: use a LearningRateSchedule", strings.TrimSpace(string(d)))
		}
	}
	if class == "Momentum" {
		class = "SGD" // TF.js's SGD with momentum
	}
	return json.Marshal(map[string]any{"class_name": class, "config": out})
}
