package scorer

import (
	"math"
	"reflect"
	"testing"

	"pgtrain/messages"
)

func TestOutputsRow(t *testing.T) {
	three := []string{"blue", "green", "red"}
	tests := []struct {
		name string
		o    outputs
		out  []float32
		want []any
	}{
		{"regression", outputs{task: messages.TaskRegression}, []float32{1.5}, []any{float32(1.5)}},
		{"softmax outputs", outputs{task: messages.TaskClassification, classes: three}, []float32{0.2, 0.7, 0.1},
			[]any{"green", float32(0.7)}},
		{"all probabilities", outputs{task: messages.TaskClassification, classes: three, probs: true}, []float32{0.2, 0.1, 0.7},
			[]any{"red", float32(0.7), []float32{0.2, 0.1, 0.7}}},
		{"a tie goes to the first class", outputs{task: messages.TaskClassification, classes: three}, []float32{0.4, 0.4, 0.2},
			[]any{"blue", float32(0.4)}},
		{"logits", outputs{task: messages.TaskClassification, classes: []string{"no", "yes"}, fromLogits: true, probs: true}, []float32{0, 0},
			[]any{"no", float32(0.5), []float32{0.5, 0.5}}},
		{"one sigmoid output of two classes", outputs{task: messages.TaskClassification, classes: []string{"no", "yes"}}, []float32{0.75},
			[]any{"yes", float32(0.75)}},
		{"one logit of two classes", outputs{task: messages.TaskClassification, classes: []string{"no", "yes"}, fromLogits: true}, []float32{0},
			[]any{"no", float32(0.5)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.o.row(tt.out); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("row(%v) = %#v, want %#v", tt.out, got, tt.want)
			}
		})
	}
}

func TestSoftmaxOfLargeLogitsIsFinite(t *testing.T) {
	o := outputs{task: messages.TaskClassification, classes: []string{"a", "b", "c"}, fromLogits: true}
	p := o.probabilities([]float32{1000, 999, -1000})
	var sum float64
	for _, v := range p {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatalf("probabilities %v", p)
		}
		sum += float64(v)
	}
	if math.Abs(sum-1) > 1e-6 || !(p[0] > p[1] && p[1] > p[2]) {
		t.Fatalf("probabilities %v do not sum to 1 in the logits' order", p)
	}
}

func TestOutputsCheck(t *testing.T) {
	tests := []struct {
		name    string
		o       outputs
		width   int
		wantErr bool
	}{
		{"regression", outputs{task: messages.TaskRegression}, 1, false},
		{"regression of two outputs", outputs{task: messages.TaskRegression}, 2, true},
		{"one score per class", outputs{task: messages.TaskClassification, classes: []string{"a", "b", "c"}}, 3, false},
		{"too few scores", outputs{task: messages.TaskClassification, classes: []string{"a", "b", "c"}}, 2, true},
		{"one output of two classes", outputs{task: messages.TaskClassification, classes: []string{"a", "b"}}, 1, false},
		{"one output of three classes", outputs{task: messages.TaskClassification, classes: []string{"a", "b", "c"}}, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.o.check(tt.width); (err != nil) != tt.wantErr {
				t.Fatalf("check(%d) = %v, want error %v", tt.width, err, tt.wantErr)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr bool
	}{
		{"defaults", Config{}, false},
		{"negative poll", Config{Poll: -1}, true},
		{"concurrency over the bound", Config{Concurrency: 1000}, true},
		{"ack pending under the concurrency", Config{Concurrency: 8, MaxAckPending: 4}, true},
		{"retry min over max", Config{RetryMin: 10e9, RetryMax: 1e9}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.WithDefaults().Validate(); (err != nil) != tt.wantErr {
				t.Fatalf("Validate() = %v, want error %v", err, tt.wantErr)
			}
		})
	}
}
