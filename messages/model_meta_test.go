package messages

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func testPlan() *Plan {
	spec, err := ParseJobSpec([]byte(`{"table":"iris","key":"id","features":[{"column":"x","scale":"standard","impute":"mean"},{"column":"c","encode":"onehot"}],
		"label":{"column":"species","encode":"onehot"},"model":[{"type":"dense","units":3,"activation":"softmax"}],"loss":"categorical_crossentropy","metrics":["accuracy"]}`))
	if err != nil {
		panic(err)
	}
	return &Plan{
		Version: SchemaVersion, JobID: "iris-1", Spec: spec, Schema: "public", Table: "iris", Key: "id",
		Features: []ColumnPlan{
			{Name: "x", PGType: "double precision", Kind: KindNumeric, HasImpute: true, Impute: 1.5, Offset: 1.5, Factor: 2},
			{Name: "c", PGType: "text", Kind: KindCategorical, Vocabulary: []string{"a", "b"}},
		},
		Label:    ColumnPlan{Name: "species", PGType: "text", Kind: KindCategorical, Vocabulary: []string{"setosa", "versicolor", "virginica"}},
		InputDim: 4, LabelDim: 3,
		Expected: KeyChecksum{Rows: 120, Sum: 7260, SumSq: 583220},
	}
}

func TestModelMetaFromPlanRoundTrips(t *testing.T) {
	p := testPlan()
	m := ModelMetaFromPlan(p)
	if m.LabelKind != LabelClassification || !reflect.DeepEqual(m.Classes, p.Label.Vocabulary) || m.OutputDim() != 3 {
		t.Fatalf("label kind %q classes %v output %d", m.LabelKind, m.Classes, m.OutputDim())
	}
	if m.Rows != 120 || m.Checksum != p.Expected {
		t.Fatalf("rows %d checksum %+v, want the plan's training rows", m.Rows, m.Checksum)
	}
	m.LastKey, m.Metrics = 150, map[string]float64{"loss": 0.5, "val_accuracy": 0.9}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"job_id"`, `"features"`, `"label_kind"`, `"input_dim"`, `"last_key"`, `"val_accuracy"`, `"vocabulary"`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("JSON lacks %s: %s", key, b)
		}
	}
	var back ModelMeta
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, m) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", back, m)
	}
	if err := back.Validate(); err != nil {
		t.Fatal(err)
	}
	// The rebuilt plan drives the same transform: same columns, widths and label encoding.
	rp := back.Plan()
	if !reflect.DeepEqual(rp.Features, p.Features) || !reflect.DeepEqual(rp.Label, p.Label) ||
		rp.InputDim != p.InputDim || rp.LabelDim != p.LabelDim || rp.Spec.Label != p.Spec.Label || rp.Version != SchemaVersion {
		t.Fatalf("Plan() = %+v, want the transform part of %+v", rp, p)
	}
}

func TestModelMetaRegression(t *testing.T) {
	p := testPlan()
	p.Spec.Label.Encode, p.Label = EncodeNone, ColumnPlan{Name: "y", Kind: KindNumeric}
	m := ModelMetaFromPlan(p)
	if m.LabelKind != LabelRegression || m.Classes != nil || m.OutputDim() != 1 {
		t.Fatalf("label kind %q classes %v output %d", m.LabelKind, m.Classes, m.OutputDim())
	}
}

func TestModelMetaValidate(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*ModelMeta)
		wantErr error
		field   string
	}{
		{name: "ok", edit: func(*ModelMeta) {}},
		{name: "future version", edit: func(m *ModelMeta) { m.Version = ModelMetaVersion + 1 }, wantErr: ErrModelMetaVersion, field: "newer"},
		{name: "no version", edit: func(m *ModelMeta) { m.Version = 0 }, wantErr: ErrModelMetaVersion, field: "version 0"},
		{name: "no features", edit: func(m *ModelMeta) { m.Features = nil }, wantErr: ErrModelMeta, field: "features"},
		{name: "width", edit: func(m *ModelMeta) { m.InputDim = 5 }, wantErr: ErrModelMeta, field: "input_dim"},
		{name: "twice", edit: func(m *ModelMeta) { m.Features[1].Name = "x" }, wantErr: ErrModelMeta, field: `"x"`},
		{name: "kind", edit: func(m *ModelMeta) { m.Features[0].Kind = "image" }, wantErr: ErrModelMeta, field: "features[0].kind"},
		{name: "no classes", edit: func(m *ModelMeta) { m.Classes = nil }, wantErr: ErrModelMeta, field: "classes"},
		{name: "label kind", edit: func(m *ModelMeta) { m.LabelKind = "ranking" }, wantErr: ErrModelMeta, field: "label_kind"},
		{name: "typed last key", edit: func(m *ModelMeta) {
			m.KeyColumns, m.LastKeyText = []KeyColumn{{Name: "tenant", Type: "text"}, {Name: "id", Type: "integer"}}, []string{"acme", "7"}
		}},
		{name: "last key of another width", edit: func(m *ModelMeta) {
			m.KeyColumns, m.LastKeyText = []KeyColumn{{Name: "tenant", Type: "text"}, {Name: "id", Type: "integer"}}, []string{"acme"}
		}, wantErr: ErrModelMeta, field: "last_key_text"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := ModelMetaFromPlan(testPlan())
			m.Features = append([]ColumnPlan(nil), m.Features...)
			tt.edit(&m)
			err := m.Validate()
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("Validate() = %v, want %v naming %s", err, tt.wantErr, tt.field)
			}
		})
	}
}
