package demo

import (
	"encoding/json"
	"fmt"

	"pgtrain/messages"
)

// Job is a regression job of the shape the demo and the end-to-end and fault tests submit:
// dense and dropout layers trained with Adam on the mean squared error. Zero fields are left
// out of the spec, so the coordinator's defaults apply.
type Job struct {
	Table, Key      string
	Features        []messages.FeatureSpec
	Label           string
	Layers          []Layer
	LearningRate    float64 // Adam's
	Metrics         []string
	Epochs          int
	BatchSize       int
	Seed            int64
	ValidationSplit float64
	RangeRows       int
	PageRows        int
	Consistency     string
}

// Layer is one layer of a Job's model, as the spec's "model" document writes it.
type Layer struct {
	Type       string  `json:"type"`
	Units      int     `json:"units,omitempty"`
	Activation string  `json:"activation,omitempty"`
	Rate       float64 `json:"rate,omitempty"`
	Name       string  `json:"name,omitempty"`
}

// Dense is a dense layer; activation "" is linear.
func Dense(units int, activation, name string) Layer {
	return Layer{Type: "dense", Units: units, Activation: activation, Name: name}
}

// Dropout is a dropout layer.
func Dropout(rate float64, name string) Layer {
	return Layer{Type: "dropout", Rate: rate, Name: name}
}

// JSON is the job spec as a client submits it. Only a NaN or infinite number makes it fail
// (a panic: the callers write their numbers as constants).
func (j Job) JSON() []byte {
	model, err := json.Marshal(struct {
		Layers []Layer `json:"layers"`
	}{j.Layers})
	if err != nil {
		panic(fmt.Sprintf("demo job %s: model: %v", j.Table, err))
	}
	// The label in its short form, a column name, as people write it.
	b, err := json.MarshalIndent(struct {
		messages.JobSpec
		Label string `json:"label"`
	}{messages.JobSpec{
		Table: j.Table, Key: messages.KeyColumns{j.Key}, Features: j.Features,
		Model:     model,
		Optimizer: messages.OptimizerSpec{Name: "adam", LearningRate: j.LearningRate},
		Loss:      "mse", Metrics: j.Metrics,
		Epochs: j.Epochs, BatchSize: j.BatchSize, Seed: j.Seed, ValidationSplit: j.ValidationSplit,
		RangeRows: j.RangeRows, PageRows: j.PageRows, Consistency: j.Consistency,
	}, j.Label}, "", "  ")
	if err != nil {
		panic(fmt.Sprintf("demo job %s: %v", j.Table, err))
	}
	return b
}
