package coordinator

import (
	"errors"
	"math"
	"strings"
	"testing"

	"pgtrain/messages"
	"pgtrain/preprocessor/transform"
)

func instancesMeta() *messages.ModelMeta {
	return &messages.ModelMeta{
		Version: messages.ModelMetaVersion, JobID: "m",
		Features: []messages.ColumnPlan{
			{Name: "r", PGType: "real", Kind: messages.KindNumeric, Factor: 1},
			{Name: "d", PGType: "double precision", Kind: messages.KindNumeric, HasImpute: true, Impute: 2.5, Factor: 1},
			{Name: "n", PGType: "integer", Kind: messages.KindNumeric, HasImpute: true, Impute: 7, Offset: 1, Factor: 0.5},
			{Name: "s", PGType: "smallint", Kind: messages.KindNumeric, Factor: 1},
			{Name: "c", PGType: "text", Kind: messages.KindCategorical, Vocabulary: []string{"a", "b"}},
			{Name: "k", PGType: "bigint", Kind: messages.KindCategorical, Vocabulary: []string{"10", "20"}},
			{Name: "f", PGType: "boolean", Kind: messages.KindCategorical, Vocabulary: []string{"true"}},
		},
		Label:     messages.ColumnPlan{Name: "y", PGType: "text", Kind: messages.KindCategorical, Vocabulary: []string{"p", "q"}},
		LabelKind: messages.LabelClassification, Classes: []string{"p", "q"},
		InputDim: 4 + 3 + 3 + 2, LabelDim: 2,
		Spec: messages.JobSpec{Label: messages.LabelSpec{Column: "y", Encode: messages.EncodeOneHot}},
	}
}

func TestInstancesAreTransformedAsTheirRowsWouldBe(t *testing.T) {
	meta := instancesMeta()
	tf, err := transform.Compile(onlinePlan(*meta))
	if err != nil {
		t.Fatal(err)
	}
	body := `{"instances": [
		{"r": 0.1, "d": 1e30, "n": 3, "s": -2, "c": "b", "k": 20, "f": true, "other": [1]},
		{"r": -1.5, "d": null, "n": null, "s": 32767, "c": "unseen", "k": "10", "f": false},
		{"r": 3, "d": -0.25, "n": 9007199254740993, "s": 0, "c": null, "k": 30, "f": null}]}`
	instances, err := decodeInstances([]byte(body), 10)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := instancesBatch(meta, instances)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw.Columns) != len(meta.Features) {
		t.Fatalf("the batch has %d columns, want the %d features and no label", len(raw.Columns), len(meta.Features))
	}
	ready, err := tf.Apply(raw)
	if err != nil {
		t.Fatal(err)
	}
	if ready.LabelDim != 0 || len(ready.Y) != 0 {
		t.Fatalf("ready batch has label_dim %d and %d label values; want none", ready.LabelDim, len(ready.Y))
	}
	want := [][]float32{
		// r (a real: rounded to float32 as PostgreSQL stores it), d, n, s, c (a, b, OOV), k, f
		{float32(float64(float32(0.1))), float32(1e30), (3 - 1) * 0.5, -2, 0, 1, 0, 0, 1, 0, 1, 0},
		{-1.5, 2.5, (7 - 1) * 0.5, 32767, 0, 0, 1, 1, 0, 0, 0, 1},
		{3, -0.25, float32((float64(9007199254740992) - 1) * 0.5), 0, 0, 0, 1, 0, 0, 1, 0, 1},
	}
	for r, row := range want {
		for j, v := range row {
			if got := ready.X[r*meta.InputDim+j]; math.Float32bits(got) != math.Float32bits(v) {
				t.Errorf("row %d input %d = %v, want %v", r, j, got, v)
			}
		}
	}
}

func TestInstancesRefusals(t *testing.T) {
	meta := instancesMeta()
	row := `"r": 1, "d": 1, "n": 1, "s": 1, "c": "a", "k": 10, "f": true`
	tests := []struct {
		name  string
		body  string
		max   int
		field string
		text  string
	}{
		{name: "not JSON", body: `{"instances": [`, field: "instances", text: "invalid JSON"},
		{name: "trailing data", body: `{"instances": [{` + row + `}]} {}`, field: "instances", text: "trailing"},
		{name: "unknown field", body: `{"inputs": []}`, field: "instances", text: "inputs"},
		{name: "no instances", body: `{}`, field: "instances", text: "required"},
		{name: "too many", body: `{"instances": [{` + row + `}, {` + row + `}]}`, max: 1, field: "instances", text: "limit of 1"},
		{name: "null instance", body: `{"instances": [null]}`, field: "instances[0]", text: "null"},
		{name: "missing column", body: `{"instances": [{"r": 1}]}`, field: "instances[0].d", text: "missing"},
		{name: "string for a number", body: `{"instances": [{` + strings.Replace(row, `"d": 1`, `"d": "1"`, 1) + `}]}`, field: "instances[0].d", text: "want a number"},
		{name: "bool for a number", body: `{"instances": [{` + strings.Replace(row, `"d": 1`, `"d": true`, 1) + `}]}`, field: "instances[0].d", text: "a boolean"},
		{name: "fraction for an integer", body: `{"instances": [{` + strings.Replace(row, `"n": 1`, `"n": 1.5`, 1) + `}]}`, field: "instances[0].n", text: "not an integer"},
		{name: "smallint out of range", body: `{"instances": [{` + strings.Replace(row, `"s": 1`, `"s": 40000`, 1) + `}]}`, field: "instances[0].s", text: "out of range"},
		{name: "real out of range", body: `{"instances": [{` + strings.Replace(row, `"r": 1`, `"r": 1e39`, 1) + `}]}`, field: "instances[0].r", text: "out of range"},
		{name: "number for text", body: `{"instances": [{` + strings.Replace(row, `"c": "a"`, `"c": 1`, 1) + `}]}`, field: "instances[0].c", text: "want a string"},
		{name: "array for a category", body: `{"instances": [{` + strings.Replace(row, `"k": 10`, `"k": [10]`, 1) + `}]}`, field: "instances[0].k", text: "an array"},
		{name: "fraction for an integer category", body: `{"instances": [{` + strings.Replace(row, `"k": 10`, `"k": 10.5`, 1) + `}]}`, field: "instances[0].k", text: "not an integer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			max := tt.max
			if max == 0 {
				max = 10
			}
			instances, err := decodeInstances([]byte(tt.body), max)
			if err == nil {
				_, err = instancesBatch(meta, instances)
			}
			var fe *messages.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field || !strings.Contains(fe.Reason, tt.text) {
				t.Fatalf("error %v, want one on %s saying %q", err, tt.field, tt.text)
			}
		})
	}
}

func TestPredictionsOfAClassifier(t *testing.T) {
	lm := &loadedModel{meta: *instancesMeta()}
	got := lm.predictions([]float32{0.25, 0.75, 0.5, 0.5}, 2)
	if got[0].Class != "q" || got[0].Probability != 0.75 || got[0].Probabilities["p"] != 0.25 {
		t.Fatalf("row 0: %+v", got[0])
	}
	if got[1].Class != "p" { // the first of equals
		t.Fatalf("row 1: %+v, want the first of two equal classes", got[1])
	}
	lm.meta.FromLogits = true
	got = lm.predictions([]float32{0, float32(math.Log(3))}, 1)
	if math.Abs(float64(got[0].Probabilities["q"])-0.75) > 1e-7 || got[0].Class != "q" {
		t.Fatalf("softmax of logits: %+v", got[0])
	}
	lm.sigmoid = true
	got = lm.predictions([]float32{0, float32(math.Log(3))}, 1)
	if got[0].Probabilities["p"] != 0.5 || math.Abs(float64(got[0].Probabilities["q"])-0.75) > 1e-7 {
		t.Fatalf("sigmoids of logits: %+v", got[0])
	}
}

func FuzzInstances(f *testing.F) {
	meta := instancesMeta()
	tf, err := transform.Compile(onlinePlan(*meta))
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(`{"instances": [{"r": 1, "d": null, "n": 2, "s": 3, "c": "a", "k": 10, "f": true}]}`))
	f.Add([]byte(`{"instances": [{"r": "x"}]}`))
	f.Add([]byte(`{"instances": [{"r": 1e39, "d": -0, "n": -9223372036854775808, "s": -32768, "c": "\u0000", "k": "", "f": false}]}`))
	f.Add([]byte(`{"instances": [null, {}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		instances, err := decodeInstances(body, 50)
		if err != nil {
			return
		}
		raw, err := instancesBatch(meta, instances)
		if err != nil {
			return
		}
		if raw.Rows() != len(instances) {
			t.Fatalf("%d rows for %d instances", raw.Rows(), len(instances))
		}
		ready, err := tf.Apply(raw)
		var re *transform.RowError
		if err != nil && !errors.As(err, &re) {
			t.Fatalf("a decoded batch does not fit the plan: %v", err)
		}
		if err == nil && len(ready.X) != len(instances)*meta.InputDim {
			t.Fatalf("%d inputs for %d instances", len(ready.X), len(instances))
		}
	})
}
