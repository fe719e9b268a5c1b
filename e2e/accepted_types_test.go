package e2e

import (
	"context"
	"testing"

	"pgtrain/internal/demo"
	"pgtrain/internal/testenv"
	"pgtrain/messages"
)

// One small job per column type pgtrain reads besides plain numbers, each feature alone:
// every job ends done with every row of typed_e2e once per epoch (SQL's checksum of the
// key), and logs its line of the table of accepted types (TestTypedKeysEveryRowOnceSameWeights
// logs the keys').
func TestAcceptedColumnTypes(t *testing.T) {
	pool, _ := testenv.Pool(t)
	natsURL := testenv.NATS(t)
	if _, err := pool.Exec(context.Background(), typedTable); err != nil {
		t.Fatal(err)
	}
	want := checksumOf(t, pool, "typed_e2e", "id::numeric", "")
	if want.Rows != 1500 {
		t.Fatalf("typed_e2e has %d rows", want.Rows)
	}
	tests := []struct {
		name string
		f    messages.FeatureSpec
	}{
		{"boolean (flag) as 0/1", messages.FeatureSpec{Column: "flag"}},
		{"date (day) as epoch seconds, minmax", messages.FeatureSpec{Column: "day", Scale: "minmax"}},
		{"timestamp (at), cyclical", messages.FeatureSpec{Column: "at", Encode: "cyclical"}},
		{"timestamptz (atz) as epoch seconds, standard", messages.FeatureSpec{Column: "atz", Scale: "standard"}},
		{"real[3] (emb, NULL arrays imputed)", messages.FeatureSpec{Column: "emb", Impute: "mean", Scale: "standard"}},
		{"float8[2] (vec)", messages.FeatureSpec{Column: "vec", Scale: "minmax"}},
		{"text (tag), hash into 16 buckets", messages.FeatureSpec{Column: "tag", Encode: "hash", Buckets: 16}},
		{"float8 (x) with NaN/±Inf, nonfinite clip", messages.FeatureSpec{Column: "x", NonFinite: "clip", Impute: "median", Scale: "standard"}},
		{"float8 (x) with NaN/±Inf, nonfinite null", messages.FeatureSpec{Column: "x", NonFinite: "null", Impute: "mean"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := demo.Job{
				Table: "typed_e2e", Key: "id", Features: []messages.FeatureSpec{tt.f}, Label: "y",
				Layers: []demo.Layer{demo.Dense(4, "relu", "hidden"), demo.Dense(1, "", "output")},
				Epochs: 1, BatchSize: 64, Seed: 3, RangeRows: 400, PageRows: 200, LearningRate: 0.01,
			}.JSON()
			r := runJob(t, pool, natsURL, 1, 1, 2<<20, spec)
			if len(r.status.Results) != 1 {
				t.Fatalf("%d epoch results, want 1", len(r.status.Results))
			}
			seen := r.status.Results[0].Seen
			seen.Merge(r.status.Results[0].SeenValid)
			if seen != want {
				t.Fatalf("the trainer saw %+v, SQL says %+v", seen, want)
			}
			logAccepted(t, "column", tt.name, want.Rows, 1, r.elapsed, 0)
		})
	}
}
