package coordinator

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// skewedTable: 1000 rows, label "a" on 600, "b" on 300, "c" on 100, interleaved over the
// keys; flag is 1 on every 5th row, else 0.
func skewedTable(t *testing.T, e *env) {
	e.exec(t, `create table skewed as select i as id, (i % 13)::float8 as x,
		case when i % 10 < 6 then 'a' when i % 10 < 9 then 'b' else 'c' end as label,
		case when i % 5 = 0 then 1 else 0 end as flag
		from generate_series(1, 1000) i`)
	e.exec(t, `alter table skewed add primary key (id)`)
	e.exec(t, `analyze skewed`)
}

func skewedSpec(t *testing.T, mutate func(m map[string]any)) []byte {
	m := map[string]any{
		"table": "skewed", "key": "id",
		"features": []any{map[string]any{"column": "x", "scale": "standard"}},
		"label":    map[string]any{"column": "label", "encode": "onehot"},
		"model":    json.RawMessage(`{"layers": [{"type": "dense", "units": 3, "activation": "softmax"}]}`),
		"loss":     "categorical_crossentropy", "epochs": 1,
	}
	mutate(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestClassWeightResolvedAtPlanning(t *testing.T) {
	e := newEnv(t)
	skewedTable(t, e)
	r := start(t, e, Config{})
	ctx := context.Background()
	near := func(a, b float64) bool { return a-b < 1e-12 && b-a < 1e-12 }

	t.Run("a map, in class order", func(t *testing.T) {
		st, err := r.cl.Submit(ctx, skewedSpec(t, func(m map[string]any) { m["class_weight"] = map[string]float64{"c": 5, "a": 1, "b": 2} }))
		if err != nil {
			t.Fatal(err)
		}
		p, err := r.cl.Plan(ctx, st.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.ClassWeights; len(got) != 3 || got[0] != 1 || got[1] != 2 || got[2] != 5 {
			t.Fatalf("class weights %v for classes %v", got, p.Label.Vocabulary)
		}
	})
	t.Run("balanced over the training rows", func(t *testing.T) {
		st, err := r.cl.Submit(ctx, skewedSpec(t, func(m map[string]any) {
			m["class_weight"] = "balanced"
			m["validation_split"] = 0.2
			m["range_rows"] = 50
		}))
		if err != nil {
			t.Fatal(err)
		}
		p, err := r.cl.Plan(ctx, st.ID)
		if err != nil {
			t.Fatal(err)
		}
		hi := p.Ranges[p.TrainingRanges()-1].Hi
		if p.ValidationRanges == 0 || hi >= 1000 {
			t.Fatalf("no validation ranges to leave out (%d, training up to key %d)", p.ValidationRanges, hi)
		}
		var n int64
		counts := map[string]int64{}
		rows, err := e.pool.Query(ctx, `select label, count(*) from skewed where id <= $1 group by label`, hi)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var l string
			var c int64
			if err := rows.Scan(&l, &c); err != nil {
				t.Fatal(err)
			}
			counts[l], n = c, n+c
		}
		rows.Close()
		for i, class := range p.Label.Vocabulary {
			want := float64(n) / (3 * float64(counts[class]))
			if !near(p.ClassWeights[i], want) {
				t.Errorf("class %s: weight %v, n_samples/(n_classes*count) = %d/(3*%d) = %v", class, p.ClassWeights[i], n, counts[class], want)
			}
		}
	})
	t.Run("balanced on a 0/1 label", func(t *testing.T) {
		st, err := r.cl.Submit(ctx, skewedSpec(t, func(m map[string]any) {
			m["label"] = "flag"
			m["loss"] = "binary_crossentropy"
			m["model"] = json.RawMessage(`{"layers": [{"type": "dense", "units": 1, "activation": "sigmoid"}]}`)
			m["class_weight"] = "balanced"
		}))
		if err != nil {
			t.Fatal(err)
		}
		p, err := r.cl.Plan(ctx, st.ID)
		if err != nil {
			t.Fatal(err)
		}
		// 800 zeros and 200 ones: 1000/(2*800) and 1000/(2*200).
		if got := p.ClassWeights; len(got) != 2 || !near(got[0], 0.625) || !near(got[1], 2.5) {
			t.Fatalf("class weights %v", got)
		}
	})
	bad := []struct {
		name    string
		weights any
		label   string
		wantMsg string
	}{
		{name: "a class without a weight", weights: map[string]float64{"a": 1, "b": 2}, wantMsg: `class "c" of the label column "label" has no weight`},
		{name: "a weight for no class", weights: map[string]float64{"a": 1, "b": 2, "c": 3, "d": 4}, wantMsg: `"d" is not a class of the label column "label"`},
		{name: "a 0/1 label holding other values", weights: "balanced", label: "x", wantMsg: `holds 10, which is not a class`},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.cl.Submit(ctx, skewedSpec(t, func(m map[string]any) {
				m["class_weight"] = tt.weights
				if tt.label != "" {
					m["label"] = tt.label
					m["features"] = []any{map[string]any{"column": "flag"}}
					m["loss"] = "binary_crossentropy"
					m["model"] = json.RawMessage(`{"layers": [{"type": "dense", "units": 1, "activation": "sigmoid"}]}`)
				}
			}))
			ae := apiErr(t, err)
			if ae.Status != http.StatusBadRequest || ae.Field != "class_weight" || !strings.Contains(ae.Message, tt.wantMsg) {
				t.Fatalf("got %d field %q: %s; want 400 class_weight saying %q", ae.Status, ae.Field, ae.Message, tt.wantMsg)
			}
		})
	}
}
