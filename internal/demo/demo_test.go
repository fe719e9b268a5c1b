package demo

import (
	"context"
	"encoding/json"
	"testing"

	"pgtrain/internal/testenv"
	"pgtrain/messages"
)

func TestDemoTableFollowsItsFormula(t *testing.T) {
	ctx := context.Background()
	pool, _ := testenv.Pool(t)
	if err := CreateTable(ctx, pool, 20000); err != nil {
		t.Fatal(err)
	}
	var n, nullAge, nullCity int
	var maxResidual float64
	err := pool.QueryRow(ctx, `select count(*), count(*) - count(age), count(*) - count(city),
		max(abs(y - (2*x1 - 3*x2 + x1*x3 + 1.5*sin(3*x4)
		  + case city when 'oslo' then 1 when 'lima' then -1 when 'pune' then 0.5
		              when 'kyiv' then -0.5 when 'nome' then 2 else 0 end
		  + 0.02*(coalesce(age, 49) - 50))))
		from pgtrain_demo`).Scan(&n, &nullAge, &nullCity, &maxResidual)
	if err != nil {
		t.Fatal(err)
	}
	if n != 20000 {
		t.Fatalf("%d rows, want 20000", n)
	}
	if nullAge < 700 || nullAge > 1300 || nullCity < 200 || nullCity > 600 {
		t.Fatalf("NULL ages %d (want about 5%%), NULL cities %d (want about 2%%)", nullAge, nullCity)
	}
	if maxResidual > 0.1001 {
		t.Fatalf("largest residual %.4f exceeds the noise bound 0.1", maxResidual)
	}
	v, err := MeanLoss(ctx, pool)
	if err != nil || v < 5 || v > 9 {
		t.Fatalf("variance of y = %v (%v), want about 6.8", v, err)
	}
	if _, err := messages.ParseJobSpec(Spec(3)); err != nil {
		t.Fatalf("the demo spec does not parse: %v", err)
	}
}

func TestJobSpec(t *testing.T) {
	job := Job{
		Table: "events", Key: "id", Label: "y",
		Features:     []messages.FeatureSpec{{Column: "a", Scale: "standard"}, {Column: "kind", Encode: "onehot"}},
		Layers:       []Layer{Dense(4, "relu", "h"), Dropout(0.25, "drop"), Dense(1, "", "out")},
		LearningRate: 0.01, Epochs: 2, BatchSize: 8, Seed: 3,
	}
	tests := []struct {
		name        string
		consistency string
	}{
		{name: "default consistency"},
		{name: "snapshot", consistency: "snapshot"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			job.Consistency = tt.consistency
			b := job.JSON()
			s, err := messages.ParseJobSpec(b)
			if err != nil {
				t.Fatalf("%v in %s", err, b)
			}
			if s.Table != "events" || s.Key.String() != "id" || s.Label.Column != "y" || len(s.Features) != 2 ||
				s.Optimizer != (messages.OptimizerSpec{Name: "adam", LearningRate: 0.01}) || s.Loss != "mse" ||
				s.Epochs != 2 || s.BatchSize != 8 || s.Seed != 3 || s.Consistency != tt.consistency {
				t.Fatalf("parsed %+v from %s", s, b)
			}
			var model struct{ Layers []map[string]any }
			if err := json.Unmarshal(s.Model, &model); err != nil {
				t.Fatal(err)
			}
			if len(model.Layers) != 3 || model.Layers[1]["type"] != "dropout" || model.Layers[1]["rate"] != 0.25 ||
				model.Layers[2]["activation"] != nil {
				t.Fatalf("model %s", s.Model)
			}
			var raw map[string]any
			if err := json.Unmarshal(b, &raw); err != nil {
				t.Fatal(err)
			}
			if _, ok := raw["page_rows"]; ok {
				t.Errorf("an unset field is in the spec, overriding the coordinator's default: %s", b)
			}
			if raw["label"] != "y" {
				t.Errorf("label %v, want the column name", raw["label"])
			}
		})
	}
}
