package model

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"pgtrain/messages"
)

func metaFixture() messages.ModelMeta {
	return messages.ModelMeta{
		Version: messages.ModelMetaVersion, JobID: "j-1", Schema: "public", Table: "t", Key: "id",
		Features: []messages.ColumnPlan{
			{Name: "x", Kind: messages.KindNumeric, HasImpute: true, Impute: 2, Offset: 2, Factor: 0.5},
			{Name: "c", Kind: messages.KindCategorical, Vocabulary: []string{"a"}},
		},
		Label:     messages.ColumnPlan{Name: "y", Kind: messages.KindNumeric},
		LabelKind: messages.LabelRegression, InputDim: 3, LabelDim: 1,
		Rows: 10, Checksum: messages.KeyChecksum{Rows: 10, Sum: 55, SumSq: 385}, LastKey: 10,
		Metrics: map[string]float64{"loss": 0.25},
		Spec:    messages.JobSpec{Table: "t", Key: messages.KeyColumns{"id"}, Model: json.RawMessage(`[{"type":"dense","units":1}]`), Loss: "mse"},
	}
}

func savedModel(t *testing.T) (string, *Sequential) {
	t.Helper()
	spec, err := ParseSpec([]byte(`{"layers":[{"type":"dense","units":2,"activation":"relu"},{"type":"dense","units":1}]}`))
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(spec, 3, Compile{Loss: "mse"}, 7)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := m.SaveTFJS(dir); err != nil {
		t.Fatal(err)
	}
	return dir, m
}

func TestWriteMetaRoundTrips(t *testing.T) {
	dir, m := savedModel(t)
	js, _ := os.ReadFile(filepath.Join(dir, TFJSModelFile))
	if _, err := ReadMeta(js); !errors.Is(err, ErrNoMeta) {
		t.Fatalf("ReadMeta before WriteMeta: %v, want ErrNoMeta", err)
	}
	want := metaFixture()
	if err := WriteMeta(dir, want); err != nil {
		t.Fatal(err)
	}
	js, err := os.ReadFile(filepath.Join(dir, TFJSModelFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(js), `"userDefinedMetadata"`) {
		t.Fatalf("model.json has no userDefinedMetadata: %s", js)
	}
	got, err := ReadMeta(js)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ReadMeta:\n got %+v\nwant %+v", got, want)
	}
	// The model itself is unchanged.
	back, err := LoadTFJS(dir)
	if err != nil {
		t.Fatal(err)
	}
	x := []float32{0.5, 1, 0}
	p1, _ := m.Predict(x, 1)
	p2, _ := back.Predict(x, 1)
	if p1[0] != p2[0] {
		t.Fatalf("prediction after WriteMeta %v, before %v", p2, p1)
	}
}

func TestReadMetaRefuses(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		wantErr error
		naming  string
	}{
		{name: "not JSON", doc: `{`, naming: "model.json"},
		{name: "no metadata", doc: `{"format":"layers-model"}`, wantErr: ErrNoMeta},
		{name: "other tool's metadata only", doc: `{"userDefinedMetadata":{"other":1}}`, wantErr: ErrNoMeta},
		{name: "future version", doc: `{"userDefinedMetadata":{"pgtrain":{"version":3,"features":"a new shape"}}}`, wantErr: messages.ErrModelMetaVersion, naming: "upgrade"},
		{name: "no version", doc: `{"userDefinedMetadata":{"pgtrain":{"job_id":"j"}}}`, wantErr: messages.ErrModelMetaVersion},
		{name: "wrong width", doc: `{"userDefinedMetadata":{"pgtrain":{"version":1,"features":[{"name":"x","kind":"numeric"}],"input_dim":2,"label_kind":"regression"}}}`, wantErr: messages.ErrModelMeta, naming: "input_dim"},
		{name: "mistyped field", doc: `{"userDefinedMetadata":{"pgtrain":{"version":1,"features":{}}}}`, naming: "pgtrain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadMeta([]byte(tt.doc))
			if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) || !strings.Contains(err.Error(), tt.naming) {
				t.Fatalf("ReadMeta = %v, want %v naming %q", err, tt.wantErr, tt.naming)
			}
		})
	}
}

func TestWriteMetaRefusesInvalidMeta(t *testing.T) {
	dir, _ := savedModel(t)
	bad := metaFixture()
	bad.InputDim = 7
	if err := WriteMeta(dir, bad); !errors.Is(err, messages.ErrModelMeta) {
		t.Fatalf("WriteMeta(bad) = %v, want ErrModelMeta", err)
	}
}

func FuzzReadMeta(f *testing.F) {
	f.Add([]byte(`{"userDefinedMetadata":{"pgtrain":{"version":1,"features":[{"name":"x","kind":"numeric"}],"input_dim":1,"label_kind":"regression"}}}`))
	f.Add([]byte(`{"userDefinedMetadata":{"pgtrain":{"version":1,"features":[{"name":"c","kind":"categorical","vocabulary":["a","b"]}],"input_dim":3,"label_kind":"classification","classes":["p","q"]}}}`))
	f.Add([]byte(`{"userDefinedMetadata":{"pgtrain":{"version":99}}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		m, err := ReadMeta(doc)
		if err != nil {
			return
		}
		// Whatever it accepts is valid metadata whose features make InputDim floats.
		if err := m.Validate(); err != nil {
			t.Fatalf("ReadMeta accepted metadata that does not validate: %v", err)
		}
		w := 0
		for _, c := range m.Features {
			w += c.Width()
		}
		if w != m.InputDim {
			t.Fatalf("features %d wide, input_dim %d", w, m.InputDim)
		}
	})
}
