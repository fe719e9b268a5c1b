package coordinator

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"pgtrain/messages"
)

func TestSubmitRefusesOverLimits(t *testing.T) {
	e := newEnv(t)
	irisTable(t, e)
	r := start(t, e, Config{}) // the default limits
	ctx := context.Background()
	model := func(doc string) func(m map[string]any) {
		return func(m map[string]any) { m["model"] = json.RawMessage(doc) }
	}
	tests := []struct {
		name      string
		mutate    func(m map[string]any)
		wantField string
		wantText  string
	}{
		// Each of these used to be accepted: the first allocated 8 GB in the model check.
		{"a billion units", model(`{"layers": [{"type": "dense", "units": 1000000000}, {"type": "dense", "units": 3, "activation": "softmax"}]}`),
			"model", "1000000000 units, over this coordinator's limit of 8192"},
		{"too many parameters", model(`{"layers": [{"type": "dense", "units": 8192}, {"type": "dense", "units": 8192}, {"type": "dense", "units": 3, "activation": "softmax"}]}`),
			"model", "over this coordinator's limit of 20000000"},
		{"too many layers", model(`{"layers": [` + strings.Repeat(`{"type": "dropout", "rate": 0.1}, `, 64) + `{"type": "dense", "units": 3, "activation": "softmax"}]}`),
			"model", "65 layers, over this coordinator's limit of 64"},
		{"fifty million epochs", func(m map[string]any) { m["epochs"] = 50000000 }, "epochs", "50000000 is over this coordinator's limit of 1000"},
		{"a billion rows per page", func(m map[string]any) { m["page_rows"] = 1000000000 }, "page_rows", "limit of 16384"},
		{"huge batches", func(m map[string]any) { m["batch_size"] = 1 << 30 }, "batch_size", "limit of 16384"},
		{"huge vocabulary", func(m map[string]any) { feature(m, 2)["vocab_size"] = 1 << 30 }, "features[2].vocab_size", "limit of 10000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			_, err := r.cl.Submit(ctx, specJSON(t, tt.mutate))
			ae := apiErr(t, err)
			if ae.Status != http.StatusBadRequest || ae.Field != tt.wantField || !strings.Contains(ae.Message, tt.wantText) {
				t.Fatalf("got %v, want a 400 on %s with %q", err, tt.wantField, tt.wantText)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("refusing took %s", d)
			}
		})
	}
	if jobs, err := r.cl.Jobs(ctx); err != nil || len(jobs) != 0 {
		t.Fatalf("jobs after the refusals: %v %v, want none", jobs, err)
	}
	// Within the limits the same spec is a job.
	if _, err := r.cl.Submit(ctx, specJSON(t, func(m map[string]any) { m["epochs"] = 1000; m["page_rows"] = 16384 })); err != nil {
		t.Fatal(err)
	}
}

func TestConfiguredLimits(t *testing.T) {
	e := newEnv(t)
	irisTable(t, e)
	r := start(t, e, Config{Limits: Limits{Epochs: 3, Units: 4, Params: 50}})
	ctx := context.Background()
	for _, tc := range []struct {
		mutate          func(m map[string]any)
		field, wantText string
	}{
		{func(m map[string]any) { m["epochs"] = 4 }, "epochs", "4 is over this coordinator's limit of 3"},
		{nil, "model", `layers[0] "dense": 8 units, over this coordinator's limit of 4 per layer`},
		// 5 inputs (2 numbers, city's 2 values and its out-of-vocabulary slot): 5×4+4 + 4×4+4 + 4×3+3 = 59.
		{func(m map[string]any) {
			m["model"] = json.RawMessage(`{"layers": [{"type": "dense", "units": 4}, {"type": "dense", "units": 4}, {"type": "dense", "units": 3, "activation": "softmax"}]}`)
		}, "model", "59 parameters on 5 input features, over this coordinator's limit of 50"},
	} {
		_, err := r.cl.Submit(ctx, specJSON(t, tc.mutate))
		ae := apiErr(t, err)
		if ae.Status != http.StatusBadRequest || ae.Field != tc.field || !strings.Contains(ae.Message, tc.wantText) {
			t.Errorf("got %v, want a 400 on %s with %q", err, tc.field, tc.wantText)
		}
	}
	for _, bad := range []Limits{{Epochs: -1}, {Params: -5}, {JobsPerSource: -1}} {
		if err := (Config{Limits: bad}).WithDefaults().Validate(); err == nil {
			t.Errorf("limits %+v: valid, want an error", bad)
		}
	}
}

// One source takes at most Limits.JobsPerSource jobs at once; one more is a 429 to retry.
func TestJobsPerSource(t *testing.T) {
	e := newEnv(t)
	irisTable(t, e)
	r := start(t, e, Config{Limits: Limits{JobsPerSource: 2}})
	ctx := context.Background()
	for range 2 {
		if _, err := r.cl.Submit(ctx, specJSON(t, nil)); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.Post("http://"+r.c.Addr()+"/v1/jobs", "application/json", strings.NewReader(string(specJSON(t, nil))))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "30" {
		t.Fatalf("a third job: %s, Retry-After %q; want 429 with Retry-After 30", resp.Status, resp.Header.Get("Retry-After"))
	}
	// A job that ends frees its place.
	jobs, err := r.cl.Jobs(ctx)
	if err != nil || len(jobs) != 2 {
		t.Fatalf("jobs: %v %v", jobs, err)
	}
	claimed, err := r.cl.ClaimJob(ctx, "trainer-t")
	if err != nil || claimed == "" {
		t.Fatalf("claiming a job: %q %v", claimed, err)
	}
	if _, err := r.c.failJob(ctx, claimed, messages.FailRequest{Error: "test: make room", TrainerID: "trainer-t"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.cl.Submit(ctx, specJSON(t, nil)); err != nil {
		t.Fatalf("a job after one ended: %v", err)
	}
}
