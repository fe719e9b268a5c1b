package messages

import (
	"errors"
	"strings"
	"testing"
)

func TestParsePredictionSpec(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		wantField string // "" means valid
	}{
		{"minimal", `{"model": "events-0a1b2c3d", "table": "t", "output": "t_scores"}`, ""},
		{"qualified output", `{"model": "m", "table": "s.t", "output": "s.t_scores", "mode": "replace"}`, ""},
		{"unknown field", `{"model": "m", "table": "t", "output": "o", "epochs": 3}`, "spec"},
		{"no model", `{"table": "t", "output": "o"}`, "model"},
		{"model id with a dot", `{"model": "a.b", "table": "t", "output": "o"}`, "model"},
		{"no table", `{"model": "m", "output": "o"}`, "table"},
		{"no output", `{"model": "m", "table": "t"}`, "output"},
		{"quote in the output", `{"model": "m", "table": "t", "output": "o\"; drop table t; --"}`, "output"},
		{"three parts", `{"model": "m", "table": "t", "output": "a.b.c"}`, "output"},
		{"empty part", `{"model": "m", "table": "t", "output": "s."}`, "output"},
		{"output of 64 bytes", `{"model": "m", "table": "t", "output": "` + strings.Repeat("o", 64) + `"}`, "output"},
		{"leading digit", `{"model": "m", "table": "t", "output": "1o"}`, "output"},
		{"unknown mode", `{"model": "m", "table": "t", "output": "o", "mode": "merge"}`, "mode"},
		{"negative page rows", `{"model": "m", "table": "t", "output": "o", "page_rows": -1}`, "page_rows"},
		{"future version", `{"version": 99, "model": "m", "table": "t", "output": "o"}`, "version"},
		{"trailing data", `{"model": "m", "table": "t", "output": "o"} {}`, "spec"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParsePredictionSpec([]byte(tt.body))
			var fe *FieldError
			switch {
			case tt.wantField == "" && err != nil:
				t.Fatalf("error %v, want none", err)
			case tt.wantField == "" && (s.Mode != OutputCreate && s.Mode != OutputReplace || s.RangeRows != DefaultRangeRows):
				t.Fatalf("defaults not applied: %+v", s)
			case tt.wantField != "" && (!errors.As(err, &fe) || fe.Field != tt.wantField):
				t.Fatalf("error %v, want one on field %q", err, tt.wantField)
			}
		})
	}
}

func TestOutputColumns(t *testing.T) {
	tests := []struct {
		name      string
		p         PredictionPlan
		wantNames string
		wantTypes string
	}{
		{"regression", PredictionPlan{Task: TaskRegression}, "value", "real"},
		{"classification", PredictionPlan{Task: TaskClassification}, "class,probability", "text,real"},
		{"with probabilities", PredictionPlan{Task: TaskClassification, Probabilities: true}, "class,probability,probabilities", "text,real,real[]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			names, types := tt.p.OutputColumns()
			if strings.Join(names, ",") != tt.wantNames || strings.Join(types, ",") != tt.wantTypes {
				t.Fatalf("columns %v %v, want %s %s", names, types, tt.wantNames, tt.wantTypes)
			}
		})
	}
}

// Whatever the body, parsing returns a spec or a field error, never a panic; an accepted
// output name splits into plain identifiers.
func FuzzParsePredictionSpec(f *testing.F) {
	f.Add([]byte(`{"model": "m-1", "table": "t", "output": "s.o", "mode": "append", "probabilities": true}`))
	f.Add([]byte(`{"model": "m", "table": "t", "output": "o\"x"}`))
	f.Add([]byte(`{"model": "m", "table": "t", "evaluate": true}`))
	f.Add([]byte(`{"model": "m", "table": "t", "evaluate": false}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParsePredictionSpec(b)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a FieldError", err)
			}
			return
		}
		if s.Output == "" {
			if s.Evaluate == nil || !*s.Evaluate {
				t.Fatalf("accepted a spec with neither an output table nor evaluate true: %+v", s)
			}
			return
		}
		schema, table, err := SplitOutputName(s.Output)
		if err != nil || table == "" || strings.ContainsAny(schema+table, "\"; \x00") {
			t.Fatalf("accepted output %q splits into %q %q (%v)", s.Output, schema, table, err)
		}
	})
}
