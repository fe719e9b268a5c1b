package model_test

import (
	"math"
	"strings"
	"testing"

	"pgtrain/model"
)

// TestNewMetricsResolvesAccuracy checks what "accuracy" computes for each loss and output
// width, through a batch whose binary, categorical and sparse accuracies all differ.
func TestNewMetricsResolvesAccuracy(t *testing.T) {
	// Two rows of width 2, or four of width 1; each case's labels give the accuracy it
	// expects a value that the other kinds of accuracy would not.
	pred := []float32{0.6, 0.7, 0.2, 0.1}
	tests := []struct {
		name      string
		loss      string
		outputDim int
		y         []float32
		want      float64
	}{
		{name: "binary crossentropy", loss: "binary_crossentropy", outputDim: 2, y: []float32{1, 0, 0, 0}, want: 0.75},
		{name: "alias of binary crossentropy", loss: "bce", outputDim: 2, y: []float32{1, 0, 0, 0}, want: 0.75},
		{name: "categorical crossentropy", loss: "categorical_crossentropy", outputDim: 2, y: []float32{0, 1, 1, 0}, want: 1},
		{name: "sparse categorical crossentropy", loss: "sparse_categorical_crossentropy", outputDim: 2, y: []float32{1, 0}, want: 1},
		{name: "regression, wide output", loss: "mse", outputDim: 2, y: []float32{0, 1, 1, 0}, want: 1},
		{name: "regression, one wide", loss: "mse", outputDim: 1, y: []float32{1, 1, 0, 1}, want: 0.75},
		{name: "no loss", loss: "", outputDim: 1, y: []float32{1, 1, 0, 1}, want: 0.75},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ms, err := model.NewMetrics(model.Compile{Loss: tc.loss, Metrics: []string{"accuracy"}}, tc.outputDim)
			if err != nil {
				t.Fatal(err)
			}
			if ms.Len() != 1 {
				t.Fatalf("Len = %d, want 1", ms.Len())
			}
			if got := ms.Results()["accuracy"]; !math.IsNaN(got) {
				t.Fatalf("accuracy over no rows = %v, want NaN", got)
			}
			ms.Update(pred, tc.y, len(pred)/tc.outputDim)
			if got := ms.Results()["accuracy"]; got != tc.want {
				t.Fatalf("accuracy = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestNewMetricsRefusesUnknown(t *testing.T) {
	tests := []struct {
		name string
		c    model.Compile
		want string
	}{
		{name: "metric", c: model.Compile{Loss: "mse", Metrics: []string{"mae", "auc"}}, want: `"auc"`},
		{name: "loss", c: model.Compile{Loss: "hinge", Metrics: []string{"mae"}}, want: `"hinge"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := model.NewMetrics(tc.c, 1); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewMetrics = %v, want an error naming %s", err, tc.want)
			}
		})
	}
}
