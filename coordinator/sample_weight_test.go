package coordinator

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"pgtrain/messages"
)

// sample_weight_column is checked at submit: a numeric column of the table, not a feature,
// the label or the key, and every weight the job may read a finite number >= 0 (one query;
// the 400 counts the bad ones).
func TestSampleWeightColumnCheckedAtSubmit(t *testing.T) {
	e := newEnv(t)
	skewedTable(t, e)
	e.exec(t, `alter table skewed add column w real, add column wn numeric, add column wt text`)
	e.exec(t, `update skewed set w = (id % 3) * 0.5, wn = id % 4, wt = 'x'`)
	r := start(t, e, Config{})
	ctx := context.Background()
	submit := func(column string) error {
		_, err := r.cl.Submit(ctx, skewedSpec(t, func(m map[string]any) { m["sample_weight_column"] = column }))
		return err
	}

	st, err := r.cl.Submit(ctx, skewedSpec(t, func(m map[string]any) { m["sample_weight_column"] = "w" }))
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.cl.Plan(ctx, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	if w := p.SampleWeight; w == nil || w.Name != "w" || w.Kind != messages.KindNumeric || w.Factor != 1 || w.Offset != 0 || p.WeightDim() != 1 {
		t.Fatalf("planned sample weight %+v", w)
	}

	e.exec(t, `update skewed set wn = null where id in (3, 4)`)
	e.exec(t, `update skewed set wn = -1 where id = 5`)
	e.exec(t, `update skewed set wn = 'NaN' where id = 6`)
	e.exec(t, `update skewed set w = '-Infinity' where id = 7`)
	bad := []struct {
		column, wantMsg string
	}{
		{"nope", `no column "nope" in public.skewed`},
		{"wt", `column "wt" is text, not numeric`},
		{"wn", `column "wn" holds 2 NULL, 1 negative and 1 NaN or infinite weights`},
		{"w", `column "w" holds 0 NULL, 0 negative and 1 NaN or infinite weights`},
		{"x", `column "x" is also the key, a feature or the label`},
		{"label", `column "label" is also the key, a feature or the label`},
	}
	for _, tt := range bad {
		ae := apiErr(t, submit(tt.column))
		if ae.Status != http.StatusBadRequest || ae.Field != "sample_weight_column" || !strings.Contains(ae.Message, tt.wantMsg) {
			t.Errorf("%s: got %d field %q: %s; want 400 sample_weight_column saying %q", tt.column, ae.Status, ae.Field, ae.Message, tt.wantMsg)
		}
	}
	// Filters apply: without the bad rows, the column is accepted.
	if _, err := r.cl.Submit(ctx, skewedSpec(t, func(m map[string]any) {
		m["sample_weight_column"] = "wn"
		m["where"] = []any{map[string]any{"column": "id", "op": ">", "value": 10}}
	})); err != nil {
		t.Fatalf("the bad weights filtered out: %v", err)
	}
}
