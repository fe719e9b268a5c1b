package client

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

func TestAnswerError(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		body      string
		wantIs    error
		wantField string
		wantText  string
	}{
		{name: "conflict is a lost lease", status: 409, body: `{"error":"lease expired"}`, wantIs: ErrLeaseLost, wantText: "lease expired"},
		{name: "not found", status: 404, body: `{"error":"no job x"}`, wantIs: ErrNotFound, wantText: "no job x"},
		{name: "bad spec names the field", status: 400, body: `{"error":"unknown column","field":"features[0].column"}`, wantField: "features[0].column", wantText: "features[0].column: unknown column"},
		{name: "non-JSON body is kept, shortened", status: 502, body: strings.Repeat("x", 500), wantText: strings.Repeat("x", 200)},
		{name: "empty body", status: 500, body: ``, wantText: "500 Internal Server Error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := answerError(http.MethodPost, "/v1/x", tt.status, []byte(tt.body))
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Fatalf("err = %v, want %v", err, tt.wantIs)
			}
			if tt.wantIs == nil {
				var apiErr *APIError
				if !errors.As(err, &apiErr) {
					t.Fatalf("err = %T %v, want *APIError", err, err)
				}
				if apiErr.Status != tt.status || apiErr.Field != tt.wantField {
					t.Fatalf("got %+v", apiErr)
				}
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Fatalf("err = %q, want it to contain %q", err, tt.wantText)
			}
		})
	}
}

func TestInvalidURLErrorHidesThePassword(t *testing.T) {
	c := New("http://alice:pa#ss@127.0.0.1:1", nil)
	_, err := c.Submit(t.Context(), []byte(`{}`))
	if err == nil {
		t.Fatal("a URL that does not parse was accepted")
	}
	if strings.Contains(err.Error(), "pa#ss") || strings.Contains(err.Error(), "#ss") {
		t.Fatalf("the error shows the password: %v", err)
	}
}

// A 409 to a user's cancel or delete is ErrConflict, not a lost lease; the job's state it
// names is kept for the caller.
func TestConflictErrors(t *testing.T) {
	tests := []struct {
		name, method, path, body string
		wantIs, wantNot          error
		wantState                string
	}{
		{name: "cancel of a done job", method: http.MethodPost, path: "/v1/jobs/j/cancel",
			body: `{"error":"job j is done: only a running job can be cancelled","job_state":"done"}`, wantIs: ErrConflict, wantNot: ErrLeaseLost, wantState: "done"},
		{name: "delete of a running job", method: http.MethodDelete, path: "/v1/jobs/j",
			body: `{"error":"job j is running: cancel it first","job_state":"running"}`, wantIs: ErrConflict, wantNot: ErrLeaseLost, wantState: "running"},
		{name: "trainer report on a cancelled job", method: http.MethodPost, path: "/v1/jobs/j/progress",
			body: `{"error":"job j is cancelled","job_state":"cancelled"}`, wantIs: ErrLeaseLost, wantNot: ErrConflict, wantState: "cancelled"},
		{name: "lease lost to another worker", method: http.MethodPost, path: "/v1/leases/j.0.0.1",
			body: `{"error":"lease j.0.0.1 is lost: it is held by f2"}`, wantIs: ErrLeaseLost, wantNot: ErrConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := answerError(tt.method, tt.path, http.StatusConflict, []byte(tt.body))
			if !errors.Is(err, tt.wantIs) || errors.Is(err, tt.wantNot) {
				t.Fatalf("err = %v; want %v, not %v", err, tt.wantIs, tt.wantNot)
			}
			if got := JobState(err); got != tt.wantState {
				t.Fatalf("JobState = %q, want %q", got, tt.wantState)
			}
			if !strings.Contains(err.Error(), tt.path) {
				t.Fatalf("err = %q does not name the request", err)
			}
		})
	}
	if got := JobState(errors.New("other")); got != "" {
		t.Fatalf("JobState of another error = %q", got)
	}
}
