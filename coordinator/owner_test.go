package coordinator

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"pgtrain/messages"
)

// Reports on leases and jobs come from the worker that owns them: a report that names no
// owner is a 400 naming the field, one from another worker a 409, and nothing of it sticks.
func TestForgedReportsAreRefused(t *testing.T) {
	_, r, p := leaseJob(t)
	ctx := context.Background()
	l := mustLease(t, r.cl, "w1")
	other := mustLease(t, r.cl, "w2")
	base := "http://" + r.c.Addr()
	never := p.EpochOrder(1)[9] // a range of pass 1 nobody was given (the window is 3)
	leasePath := "/v1/leases/" + l.ID
	jobPath := "/v1/jobs/" + p.JobID
	tests := []struct {
		name      string
		path      string
		body      any
		wantCode  int
		wantField string
	}{
		{"lease report without worker_id", leasePath, map[string]any{"done": true, "next_page": 9}, 400, "worker_id"},
		{"lease report from another worker", leasePath, messages.LeaseProgress{WorkerID: "w2", Done: true, NextPage: 9}, 409, ""},
		{"release by another worker", leasePath, messages.LeaseProgress{WorkerID: "evil", Release: true}, 409, ""},
		{"progress without trainer_id", jobPath + "/progress", map[string]any{"epoch": 1, "done": true}, 400, "trainer_id"},
		{"progress before any claim", jobPath + "/progress", messages.TrainerProgress{TrainerID: "evil", Epoch: 1, Done: true}, 409, ""},
		{"fail without an owner", jobPath + "/fail", map[string]any{"error": "evil"}, 400, "trainer_id"},
		{"fail by a worker without its lease", jobPath + "/fail", map[string]any{"error": "evil", "worker_id": "w1"}, 400, "lease_id"},
		{"fail by a worker that does not hold the lease", jobPath + "/fail", messages.FailRequest{Error: "evil", WorkerID: "w1", LeaseID: other.ID}, 409, ""},
		{"fail with a lease of no job", jobPath + "/fail", messages.FailRequest{Error: "evil", WorkerID: "w1", LeaseID: "x"}, 409, ""},
		{"fail by an unclaimed trainer", jobPath + "/fail", messages.FailRequest{Error: "evil", TrainerID: "evil"}, 409, ""},
		{"fail for a page never read", jobPath + "/fail",
			messages.FailRequest{Error: "evil", Batch: &messages.BatchID{JobID: p.JobID, Pass: 1, Range: never}}, 409, ""},
		{"fail for a page of another job", jobPath + "/fail",
			messages.FailRequest{Error: "evil", Batch: &messages.BatchID{JobID: "other-00000000", Range: l.Range.Index}}, 409, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body, err := json.Marshal(tc.body)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(mustRequest(t, http.MethodPost, base+tc.path, body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			var er messages.ErrorResponse
			if resp.StatusCode != tc.wantCode || json.Unmarshal(b, &er) != nil || er.Field != tc.wantField {
				t.Fatalf("%d %s, want %d naming field %q", resp.StatusCode, b, tc.wantCode, tc.wantField)
			}
		})
	}
	st, err := r.cl.Job(ctx, p.JobID)
	if err != nil || st.State != messages.JobRunning || st.Fetch.Done != 0 || st.Fetch.Leased != 2 || st.Trainer.ID != "" {
		t.Fatalf("after the forged reports: %+v, %v; want the job running with 2 leases, none done, no trainer", st, err)
	}

	// The owners are heard. The model path is the coordinator's, whatever the trainer sends.
	if _, err := r.cl.ReportLease(ctx, l.ID, messages.LeaseProgress{WorkerID: "w1", NextPage: 1, Done: true}); err != nil {
		t.Fatal(err)
	}
	if id, err := r.cl.ClaimJob(ctx, "t1"); err != nil || id != p.JobID {
		t.Fatalf("claim: %q, %v", id, err)
	}
	evil, _ := json.Marshal(map[string]any{"trainer_id": "t1", "epoch": 2, "done": true, "model_path": "/etc/shadow"})
	if code := doJSON(t, mustRequest(t, http.MethodPost, base+jobPath+"/progress", evil), nil); code != http.StatusNoContent {
		t.Fatalf("final report: %d", code)
	}
	st, err = r.cl.Job(ctx, p.JobID)
	if err != nil || st.State != messages.JobDone || st.ModelPath != messages.ModelDir(p.JobID) || st.Fetch.Done != 1 {
		t.Fatalf("final status %+v, %v; want done with model path %q", st, err, messages.ModelDir(p.JobID))
	}
}
