package trainer

import (
	"errors"
	"strings"
	"testing"

	"pgtrain/messages"
)

func TestBuildModelBackendChoice(t *testing.T) {
	plan := &messages.Plan{
		InputDim: 3, LabelDim: 1,
		Spec: messages.JobSpec{
			Model: []byte(`{"layers": [{"type": "dense", "units": 1}]}`),
			Loss:  "mse", Optimizer: messages.OptimizerSpec{Name: "sgd"},
		},
	}
	tests := []struct {
		name     string
		spec     string // the job spec's backend
		override string // the trainer's Config.Backend
		wantErr  string // "" for success
	}{
		{name: "default is go", spec: ""},
		{name: "spec says go", spec: "go"},
		{name: "override wins over the spec", spec: "tensorflow", override: "go"},
		{name: "tensorflow without the tag", spec: "tensorflow", wantErr: "built without the tensorflow tag; see README"},
		{name: "override to tensorflow without the tag", spec: "go", override: "tensorflow", wantErr: "built without the tensorflow tag; see README"},
		{name: "unknown backend", spec: "torch", wantErr: `backend "torch" is not built into this binary`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, ok := LookupBackend("tensorflow"); ok && strings.Contains(tc.wantErr, "tensorflow tag") {
				t.Skip("this test binary has the tensorflow backend")
			}
			p := *plan
			p.Spec.Backend = tc.spec
			m, err := buildModel(&p, tc.override)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if _, err := m.TrainOnBatch([]float32{1, 2, 3}, []float32{1}, 1); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrNoBackend) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("buildModel = %v, want an ErrNoBackend error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestConfigValidateBackend(t *testing.T) {
	if err := (Config{Backend: "go"}).WithDefaults().Validate(); err != nil {
		t.Fatalf("backend go: %v", err)
	}
	err := (Config{Backend: "torch"}).WithDefaults().Validate()
	if !errors.Is(err, ErrNoBackend) {
		t.Fatalf("backend torch: Validate() = %v, want ErrNoBackend", err)
	}
}
