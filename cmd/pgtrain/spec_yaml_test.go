package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestReadSpecYAML(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		want    map[string]any
		wantErr string
	}{
		{name: "y stays a string (YAML 1.2)", yaml: "label: y\n", want: map[string]any{"label": "y"}},
		{name: "yes, no, on, off stay strings", yaml: "a: yes\nb: no\nc: on\nd: off\ne: Y\n",
			want: map[string]any{"a": "yes", "b": "no", "c": "on", "d": "off", "e": "Y"}},
		{name: "true is a boolean", yaml: "wait: true\n", want: map[string]any{"wait": true}},
		{name: "numbers", yaml: "epochs: 3\nlr: 0.5\nbig: 1e3\n", want: map[string]any{"epochs": 3.0, "lr": 0.5, "big": 1000.0}},
		{name: "nested lists and maps", yaml: "features:\n  - column: city\n    encode: onehot\n  - column: n\n",
			want: map[string]any{"features": []any{map[string]any{"column": "city", "encode": "onehot"}, map[string]any{"column": "n"}}}},
		{name: "flow style", yaml: "model: {layers: [{type: dense, units: 1}]}\n",
			want: map[string]any{"model": map[string]any{"layers": []any{map[string]any{"type": "dense", "units": 1.0}}}}},
		{name: "duplicate key", yaml: "label: y\nlabel: z\n", wantErr: "already defined"},
		{name: "non-string key names where", yaml: "features:\n  - {1: x}\n", wantErr: "features[0]: key 1 is not a string"},
		{name: "not YAML", yaml: "label: [y\n", wantErr: "neither JSON nor YAML"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "spec.yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			b, err := readSpec(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("not JSON: %s: %v", b, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %s, want %v", b, tt.want)
			}
		})
	}
}

func TestReadSpecKeepsJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spec.json")
	in := `{"label": "y", "epochs": 1}`
	if err := os.WriteFile(path, []byte(in), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := readSpec(path)
	if err != nil || string(b) != in {
		t.Fatalf("readSpec = %q, %v; want the JSON as is", b, err)
	}
}

// FuzzYAMLToJSON: whatever the file holds, yamlToJSON returns an error or valid JSON, and
// never panics (the spec file is the user's input to the CLI).
func FuzzYAMLToJSON(f *testing.F) {
	for _, seed := range []string{
		"label: y\n", "a: [1, {b: yes}]\n", "{1: x}\n", "- a\n- b\n", "a: &x 1\nb: *x\n", "a: .inf\n", "",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		j, err := yamlToJSON(b)
		if err != nil {
			return
		}
		if !json.Valid(j) {
			t.Fatalf("yamlToJSON(%q) = %q, not JSON", b, j)
		}
	})
}
