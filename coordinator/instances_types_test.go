package coordinator

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"pgtrain/messages"
	"pgtrain/preprocessor/transform"
)

// typedMeta is a model over the column types besides plain numbers.
func typedMeta() *messages.ModelMeta {
	return &messages.ModelMeta{
		Version: messages.ModelMetaVersion, JobID: "t",
		Features: []messages.ColumnPlan{
			{Name: "b", PGType: "boolean", Type: messages.TypeBoolean, Kind: messages.KindNumeric, Factor: 1},
			{Name: "d", PGType: "date", Type: messages.TypeDate, Kind: messages.KindNumeric, Factor: 1},
			{Name: "ts", PGType: "timestamp without time zone", Type: messages.TypeTimestamp, Kind: messages.KindNumeric, Factor: 1},
			{Name: "tz", PGType: "timestamp with time zone", Type: messages.TypeTimestampTZ, Kind: messages.KindNumeric,
				Encode: messages.EncodeCyclical, Factor: 1, NonFinite: messages.NonFiniteNull, HasImpute: true},
			{Name: "e", PGType: "real[]", Type: messages.TypeFloat4Array, Kind: messages.KindNumeric, Elements: []messages.ElementPlan{
				{Factor: 1, HasImpute: true, Impute: 3}, {Factor: 1, HasImpute: true, Impute: 7}}},
			{Name: "h", PGType: "text", Kind: messages.KindCategorical, Encode: messages.EncodeHash, Buckets: 3},
		},
		Label:     messages.ColumnPlan{Name: "y", PGType: "double precision", Kind: messages.KindNumeric},
		LabelKind: messages.LabelRegression, InputDim: 1 + 1 + 1 + 6 + 2 + 3, LabelDim: 1,
	}
}

func TestTypedInstances(t *testing.T) {
	meta := typedMeta()
	tf, err := transform.Compile(onlinePlan(*meta))
	if err != nil {
		t.Fatal(err)
	}
	body := `{"instances": [
		{"b": true, "d": "2024-03-01", "ts": "2024-03-01T06:00:00.5", "tz": "2024-03-01T07:00:00+01:00", "e": [0.1, null], "h": "a"},
		{"b": false, "d": "1969-12-31", "ts": "1970-01-01 00:00:01", "tz": "infinity", "e": null, "h": null}]}`
	instances, err := decodeInstances([]byte(body), 10)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := instancesBatch(meta, instances)
	if err != nil {
		t.Fatal(err)
	}
	ready, err := tf.Apply(raw)
	if err != nil {
		t.Fatal(err)
	}
	day := float64(time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC).Unix())
	cyc := make([]float32, 6)
	transform.Cyclical(cyc, day+6*3600)
	epoch := make([]float32, 6)
	transform.Cyclical(epoch, 0) // infinity is NULL under nonfinite null, imputed as 0
	bucket := make([]float32, 3)
	bucket[transform.Hash("a")%3] = 1
	want := append(append(append([]float32{1, float32(day), float32(day + 6*3600 + 0.5)}, cyc...), float32(float32(0.1)), 7), bucket...)
	want = append(append(append(want, 0, -86400, 1), epoch...), 3, 7)
	want = append(want, 0, 0, 0)
	if len(ready.X) != len(want) {
		t.Fatalf("%d inputs, want %d", len(ready.X), len(want))
	}
	for i := range want {
		if ready.X[i] != want[i] {
			t.Fatalf("input %d: %v, want %v\n got %v\nwant %v", i, ready.X[i], want[i], ready.X, want)
		}
	}
}

func TestTypedInstancesRefusals(t *testing.T) {
	meta := typedMeta()
	row := `"b": true, "d": "2024-03-01", "ts": "2024-03-01T06:00:00", "tz": "2024-03-01T06:00:00Z", "e": [1, 2], "h": "x"`
	tests := []struct {
		name, from, to, field, text string
	}{
		{"number for a boolean", `"b": true`, `"b": 1`, "instances[0].b", "want true or false"},
		{"time in a date", `"d": "2024-03-01"`, `"d": "2024-03-01T00:00:00"`, "instances[0].d", `is not a date (want the form "2006-01-02")`},
		{"zone in a timestamp", `"ts": "2024-03-01T06:00:00"`, `"ts": "2024-03-01T06:00:00Z"`, "instances[0].ts", "is not a timestamp"},
		{"no zone in a timestamptz", `"tz": "2024-03-01T06:00:00Z"`, `"tz": "2024-03-01T06:00:00"`, "instances[0].tz", "is not a timestamptz"},
		{"number for a timestamp", `"ts": "2024-03-01T06:00:00"`, `"ts": 1709272800`, "instances[0].ts", "want a string"},
		{"short array", `"e": [1, 2]`, `"e": [1]`, "instances[0].e", "an array of 1 elements, want 2"},
		{"scalar for an array", `"e": [1, 2]`, `"e": 1`, "instances[0].e", "want an array of 2 numbers"},
		{"string element", `"e": [1, 2]`, `"e": [1, "2"]`, "instances[0].e", "element 1: got a string"},
		{"array for a hashed column", `"h": "x"`, `"h": ["x"]`, "instances[0].h", "an array"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			instances, err := decodeInstances([]byte(`{"instances": [{`+strings.Replace(row, tt.from, tt.to, 1)+`}]}`), 10)
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

func FuzzTypedInstances(f *testing.F) {
	meta := typedMeta()
	tf, err := transform.Compile(onlinePlan(*meta))
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(`{"instances": [{"b": true, "d": "2024-03-01", "ts": "2024-03-01T06:00:00.5", "tz": "-infinity", "e": [0.1, null], "h": "a"}]}`))
	f.Add([]byte(`{"instances": [{"b": null, "d": "0001-01-01", "ts": "9999-12-31 23:59:59.999999", "tz": "2024-03-01T07:00:00+14:00", "e": [1e39, 1], "h": ""}]}`))
	f.Add([]byte(`{"instances": [{"e": [[1], {}]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		instances, err := decodeInstances(body, 50)
		if err != nil {
			return
		}
		raw, err := instancesBatch(meta, instances)
		if err != nil {
			return
		}
		ready, err := tf.Apply(raw)
		var re *transform.RowError
		if err != nil && !errors.As(err, &re) {
			t.Fatalf("a decoded batch does not fit the plan: %v", err)
		}
		if err == nil && len(ready.X) != len(instances)*meta.InputDim {
			t.Fatalf("%d inputs for %d instances", len(ready.X), len(instances))
		}
		for _, x := range readyX(ready) {
			if math.IsNaN(float64(x)) {
				t.Fatalf("NaN input from %s", body)
			}
		}
	})
}

func readyX(b *messages.ReadyBatch) []float32 {
	if b == nil {
		return nil
	}
	return b.X
}
