package messages

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// controlsSpec is goodSpec with a validation split and an accuracy metric, for the controls
// to monitor.
func controlsSpec(controls string) string {
	return strings.Replace(goodSpec, `"loss": "mse"`, `"loss": "binary_crossentropy", "metrics": ["accuracy"], "validation_split": 0.2`+controls, 1)
}

func TestTrainingControlsNameTheField(t *testing.T) {
	tests := []struct {
		name      string
		controls  string
		wantField string
		wantMsg   string
	}{
		{name: "early stopping", controls: `, "early_stopping": {"monitor": "val_accuracy", "patience": 3, "restore_best_weights": true, "baseline": 0.6}`},
		{name: "default monitors", controls: `, "early_stopping": {}, "model_checkpoint": {}, "reduce_lr_on_plateau": {}`},
		{name: "class weights", controls: `, "class_weight": {"0": 1, "1": 4.5}`},
		{name: "balanced", controls: `, "class_weight": "balanced"`},
		{name: "cosine with warm-up", controls: `, "optimizer": {"schedule": {"module": "keras.optimizers.schedules", "class_name": "CosineDecay",
			"config": {"initial_learning_rate": 0.0, "decay_steps": 100, "warmup_target": 0.01, "warmup_steps": 10}}}`,
			wantField: "optimizer.schedule.config.initial_learning_rate", wantMsg: "positive"},
		{name: "piecewise", controls: `, "optimizer": {"schedule": {"class_name": "PiecewiseConstantDecay", "config": {"boundaries": [100, 200], "values": [0.1, 0.01, 0.001]}}}`},
		{name: "unknown monitor", controls: `, "early_stopping": {"monitor": "val_auc"}`,
			wantField: "early_stopping.monitor", wantMsg: `unknown metric "val_auc" (this job reports loss, accuracy, val_loss, val_accuracy)`},
		{name: "negative patience", controls: `, "early_stopping": {"patience": -1}`, wantField: "early_stopping.patience", wantMsg: "must not be negative"},
		{name: "negative start", controls: `, "early_stopping": {"start_from_epoch": -2}`, wantField: "early_stopping.start_from_epoch"},
		{name: "bad mode", controls: `, "model_checkpoint": {"mode": "best"}`, wantField: "model_checkpoint.mode"},
		{name: "checkpoint monitor", controls: `, "model_checkpoint": {"monitor": "mae"}`, wantField: "model_checkpoint.monitor"},
		{name: "factor of 1", controls: `, "reduce_lr_on_plateau": {"factor": 1}`, wantField: "reduce_lr_on_plateau.factor"},
		{name: "negative cooldown", controls: `, "reduce_lr_on_plateau": {"cooldown": -1}`, wantField: "reduce_lr_on_plateau.cooldown"},
		{name: "plateau with a schedule", controls: `, "reduce_lr_on_plateau": {}, "optimizer": {"schedule": {"class_name": "ExponentialDecay",
			"config": {"initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.9}}}`, wantField: "reduce_lr_on_plateau", wantMsg: "schedule"},
		{name: "negative class weight", controls: `, "class_weight": {"0": -1, "1": 1}`, wantField: "class_weight"},
		{name: "empty class weight", controls: `, "class_weight": {}`, wantField: "class_weight"},
		{name: "class weight word", controls: `, "class_weight": "auto"`, wantField: "spec", wantMsg: `"balanced"`},
		{name: "sample weights", controls: `, "sample_weight_column": "w", "class_weight": {"0": 1, "1": 2}`},
		{name: "sample weight is a feature", controls: `, "sample_weight_column": "area"`, wantField: "sample_weight_column", wantMsg: `"area" is also the key, a feature or the label`},
		{name: "sample weight is the label", controls: `, "sample_weight_column": "price"`, wantField: "sample_weight_column"},
		{name: "sample weight is the key", controls: `, "sample_weight_column": "id"`, wantField: "sample_weight_column"},
		{name: "unknown schedule", controls: `, "optimizer": {"schedule": {"class_name": "PolynomialDecay", "config": {}}}`, wantField: "optimizer.schedule.class_name"},
		{name: "piecewise lengths", controls: `, "optimizer": {"schedule": {"class_name": "PiecewiseConstantDecay", "config": {"boundaries": [1], "values": [0.1]}}}`,
			wantField: "optimizer.schedule.config.values"},
		{name: "piecewise order", controls: `, "optimizer": {"schedule": {"class_name": "PiecewiseConstantDecay", "config": {"boundaries": [5, 1], "values": [0.1, 0.2, 0.3]}}}`,
			wantField: "optimizer.schedule.config.boundaries"},
		{name: "decay steps", controls: `, "optimizer": {"schedule": {"class_name": "InverseTimeDecay", "config": {"initial_learning_rate": 0.1, "decay_rate": 0.5}}}`,
			wantField: "optimizer.schedule.config.decay_steps"},
		{name: "cosine alpha", controls: `, "optimizer": {"schedule": {"class_name": "CosineDecay", "config": {"initial_learning_rate": 0.1, "decay_steps": 5, "alpha": 2}}}`,
			wantField: "optimizer.schedule.config.alpha"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := controlsSpec(tt.controls)
			if tt.name == "cosine with warm-up" {
				// initial_learning_rate 0 is refused; Keras's warm-up starts from a rate above 0 here.
				if _, err := ParseJobSpec([]byte(strings.Replace(doc, `"initial_learning_rate": 0.0`, `"initial_learning_rate": 0.0001`, 1))); err != nil {
					t.Fatalf("a warm-up schedule was refused: %v", err)
				}
			}
			_, err := ParseJobSpec([]byte(doc))
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v, want a FieldError", err)
			}
			if fe.Field != tt.wantField || !strings.Contains(fe.Reason, tt.wantMsg) {
				t.Fatalf("%s: %s, want field %q saying %q", fe.Field, fe.Reason, tt.wantField, tt.wantMsg)
			}
		})
	}
}

// A val_ monitor without a validation split says what is missing.
func TestValMonitorNeedsASplit(t *testing.T) {
	doc := strings.Replace(goodSpec, `"loss": "mse"`, `"loss": "mse", "early_stopping": {}`, 1)
	_, err := ParseJobSpec([]byte(doc))
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "early_stopping.monitor" || !strings.Contains(fe.Reason, `"val_loss" needs validation_split`) {
		t.Fatalf("err = %v", err)
	}
}

// class_weight applies to classifications only.
func TestClassWeightNeedsClasses(t *testing.T) {
	doc := strings.Replace(goodSpec, `"loss": "mse"`, `"loss": "mse", "class_weight": {"0": 1}`, 1)
	_, err := ParseJobSpec([]byte(doc))
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "class_weight" || !strings.Contains(fe.Reason, "classification") {
		t.Fatalf("err = %v", err)
	}
}

func TestControlLimits(t *testing.T) {
	s, err := ParseJobSpec([]byte(controlsSpec(`, "class_weight": {"0": 1, "1": 2, "2": 3}, "optimizer": {"schedule": {"class_name": "PiecewiseConstantDecay",
		"config": {"boundaries": [1, 2, 3], "values": [0.4, 0.3, 0.2, 0.1]}}}`)))
	if err != nil {
		t.Fatal(err)
	}
	var fe *FieldError
	if err := s.CheckLimits(SpecLimits{ClassWeights: 2}); !errors.As(err, &fe) || fe.Field != "class_weight" || !strings.Contains(fe.Reason, "limit of 2") {
		t.Errorf("class weights over the limit: %v", err)
	}
	if err := s.CheckLimits(SpecLimits{ScheduleBoundaries: 2}); !errors.As(err, &fe) || fe.Field != "optimizer.schedule.config.boundaries" {
		t.Errorf("boundaries over the limit: %v", err)
	}
	if err := s.CheckLimits(SpecLimits{ClassWeights: 3, ScheduleBoundaries: 3}); err != nil {
		t.Errorf("at the limits: %v", err)
	}
}

// The controls survive the JSON round trip a plan takes (class_weight "balanced" included).
func TestControlsRoundTrip(t *testing.T) {
	s, err := ParseJobSpec([]byte(controlsSpec(`, "class_weight": "balanced", "early_stopping": {"patience": 2}`)))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseJobSpec(b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if !back.ClassWeight.Balanced || back.EarlyStopping.Patience != 2 || back.EarlyStopping.Monitor != "val_loss" {
		t.Fatalf("round trip: %+v %+v", back.ClassWeight, back.EarlyStopping)
	}
}
