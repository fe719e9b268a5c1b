package coordinator

import (
	"context"
	"net/http"
	"strings"
	"testing"
)

// A planning fault the same request meets again is a 4xx naming the field, the size and the
// limit: a 5xx would be retried by the client and plan the whole table again each time.
func TestPermanentPlanningErrorsAre4xx(t *testing.T) {
	e := newEnv(t)
	e.exec(t, `create table wide_vocab as select i as id, 'category-' || lpad(i::text, 24, '0') as c, i::float8 as y
		from generate_series(1, 500) i`)
	e.exec(t, `alter table wide_vocab add primary key (id)`)
	e.exec(t, `create table huge_value as select i as id, (case when i = 5 then 1e400 else i end)::numeric as x, i::float8 as y
		from generate_series(1, 100) i`)
	e.exec(t, `alter table huge_value add primary key (id)`)
	r := start(t, e, Config{MaxPayload: 4096})
	tests := []struct {
		name       string
		spec       string
		wantStatus int
		wantField  string
		wantMsg    []string
	}{
		{
			name: "plan over the bus's max payload",
			spec: `{"table":"wide_vocab","key":"id","features":[{"column":"c","encode":"onehot","vocab_size":1000}],"label":"y",
				"model":{"layers":[{"type":"dense","units":1}]},"loss":"mse","epochs":1,"batch_size":16}`,
			wantStatus: http.StatusBadRequest,
			wantField:  "features[0].vocab_size",
			wantMsg:    []string{"the job's plan takes", "more than the 3072 the bus takes in one message (NATS max_payload 4096", "the largest vocabulary holds 500 values", "lower vocab_size"},
		},
		{
			name: "a value the statistics cannot hold",
			spec: `{"table":"huge_value","key":"id","features":[{"column":"x","scale":"standard"}],"label":"y",
				"model":{"layers":[{"type":"dense","units":1}]},"loss":"mse","epochs":1,"batch_size":16}`,
			wantStatus: http.StatusUnprocessableEntity,
			wantField:  "table",
			wantMsg:    []string{"out of range for type double precision", "SQLSTATE 22003"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.cl.Submit(context.Background(), []byte(tt.spec))
			ae := apiErr(t, err)
			if ae.Status != tt.wantStatus || ae.Field != tt.wantField {
				t.Fatalf("got %d field %q (%s), want %d field %q", ae.Status, ae.Field, ae.Message, tt.wantStatus, tt.wantField)
			}
			for _, m := range tt.wantMsg {
				if !strings.Contains(ae.Message, m) {
					t.Errorf("message %q does not say %q", ae.Message, m)
				}
			}
		})
	}
	jobs, err := r.cl.Jobs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 0 {
		t.Fatalf("%d jobs created by refused submissions", len(jobs))
	}
}
