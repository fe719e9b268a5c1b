package messages

import (
	"errors"
	"strings"
	"testing"
)

const goodSpec = `{
  "table": "public.houses", "key": "id",
  "features": [{"column": "area", "impute": "median", "scale": "standard"},
               {"column": "city", "encode": "onehot", "vocab_size": 10}],
  "label": "price",
  "model": {"layers": [{"type": "dense", "units": 1}]},
  "loss": "mse"
}`

func TestParseJobSpecDefaults(t *testing.T) {
	s, err := ParseJobSpec([]byte(goodSpec))
	if err != nil {
		t.Fatal(err)
	}
	if s.Label.Column != "price" || s.Epochs != DefaultEpochs || s.BatchSize != DefaultBatchSize ||
		s.RangeRows != DefaultRangeRows || s.Backend != "go" || s.Optimizer.Name != "adam" || s.Version != SchemaVersion {
		t.Fatalf("defaults not applied: %+v", s)
	}
}

func TestParseJobSpecNamesTheField(t *testing.T) {
	tests := []struct {
		name      string
		from, to  string
		wantField string
	}{
		{"missing table", `"table": "public.houses",`, ``, "table"},
		{"unknown field", `"key": "id",`, `"key": "id", "tabel": "x",`, "spec"},
		{"bad impute", `"impute": "median"`, `"impute": "mode"`, "features[0].impute"},
		{"bad scale", `"scale": "standard"`, `"scale": "log"`, "features[0].scale"},
		{"scaled one-hot", `"encode": "onehot",`, `"encode": "onehot", "scale": "minmax",`, "features[1].scale"},
		{"duplicate column", `{"column": "city"`, `{"column": "area"`, "features[1].column"},
		{"label is a feature", `"label": "price"`, `"label": "area"`, "label"},
		{"bad label encoding", `"label": "price"`, `"label": {"column": "price", "encode": "bits"}`, "label.encode"},
		{"no model", `"model": {"layers": [{"type": "dense", "units": 1}]},`, ``, "model"},
		{"bad epochs", `"loss": "mse"`, `"loss": "mse", "epochs": -1`, "epochs"},
		{"bad split", `"loss": "mse"`, `"loss": "mse", "validation_split": 1`, "validation_split"},
		{"bad consistency", `"loss": "mse"`, `"loss": "mse", "consistency": "strong"`, "consistency"},
		{"bad backend", `"loss": "mse"`, `"loss": "mse", "backend": "torch"`, "backend"},
		{"future version", `"loss": "mse"`, `"loss": "mse", "version": 99`, "version"},
		{"not json", `{`, `[`, "spec"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := strings.Replace(goodSpec, tt.from, tt.to, 1)
			_, err := ParseJobSpec([]byte(doc))
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v, want a FieldError", err)
			}
			if fe.Field != tt.wantField {
				t.Fatalf("field = %q (%v), want %q", fe.Field, err, tt.wantField)
			}
		})
	}
}

func FuzzParseJobSpec(f *testing.F) {
	f.Add([]byte(goodSpec))
	f.Add([]byte(`{"label": 1}`))
	f.Add([]byte(controlsSpec(`, "class_weight": "balanced", "early_stopping": {"patience": 2, "baseline": 0.5},
		"model_checkpoint": {"monitor": "val_accuracy"}, "optimizer": {"schedule": {"class_name": "PiecewiseConstantDecay",
		"config": {"boundaries": [10], "values": [0.1, 0.01]}}}`)))
	f.Add([]byte(controlsSpec(`, "class_weight": {"0": 1}, "reduce_lr_on_plateau": {"factor": 0.5, "patience": 0}`)))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseJobSpec(data)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field == "" {
				t.Fatalf("error without a field: %v", err)
			}
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("a parsed spec does not validate: %v", err)
		}
	})
}

func TestCheckLimitsNamesTheFieldAndTheLimit(t *testing.T) {
	limits := SpecLimits{Epochs: 100, BatchSize: 4096, PageRows: 16384, VocabSize: 1000}
	tests := []struct {
		name      string
		from, to  string
		wantField string
		wantLimit string
	}{
		{"within", `"loss": "mse"`, `"loss": "mse", "epochs": 100, "batch_size": 4096, "page_rows": 16384`, "", ""},
		{"epochs", `"loss": "mse"`, `"loss": "mse", "epochs": 50000000`, "epochs", "100"},
		{"batch size", `"loss": "mse"`, `"loss": "mse", "batch_size": 4097`, "batch_size", "4096"},
		{"page rows", `"loss": "mse"`, `"loss": "mse", "page_rows": 1000000000`, "page_rows", "16384"},
		{"feature vocabulary", `"vocab_size": 10`, `"vocab_size": 1001`, "features[1].vocab_size", "1000"},
		{"label vocabulary", `"label": "price"`, `"label": {"column": "price", "encode": "index", "vocab_size": 5000}`, "label.vocab_size", "1000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseJobSpec([]byte(strings.Replace(goodSpec, tt.from, tt.to, 1)))
			if err != nil {
				t.Fatal(err)
			}
			err = s.CheckLimits(limits)
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("CheckLimits: %v, want nil", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.wantField || !strings.Contains(fe.Reason, tt.wantLimit) {
				t.Fatalf("CheckLimits: %v, want a FieldError on %s naming the limit %s", err, tt.wantField, tt.wantLimit)
			}
			if err := s.CheckLimits(SpecLimits{}); err != nil {
				t.Fatalf("without limits: %v", err)
			}
		})
	}
}
