package messages

import "time"

// Job states.
const (
	JobPlanning = "planning"
	JobRunning  = "running"
	JobDone     = "done"
	JobFailed   = "failed"
)

// JobStatus is what GET /v1/jobs/{id} answers: state, progress, per-epoch results and the
// leases in flight. It never contains a connection string.
type JobStatus struct {
	Version   int           `json:"version"`
	ID        string        `json:"id"`
	State     string        `json:"state"`
	Error     string        `json:"error,omitempty"`
	Table     string        `json:"table"`
	CreatedAt time.Time     `json:"created_at"`
	UpdatedAt time.Time     `json:"updated_at"`
	Epochs    int           `json:"epochs"`
	Ranges    int           `json:"ranges"`
	Rows      int64         `json:"rows"`
	Replay    bool          `json:"replay"`
	Trainer   TrainerState  `json:"trainer"`
	Results   []EpochResult `json:"results,omitempty"`
	Fetch     FetchSummary  `json:"fetch"`
	Leases    []LeaseInfo   `json:"leases,omitempty"`
	ModelPath string        `json:"model_path,omitempty"`
}

// TrainerState is the trainer's last report.
type TrainerState struct {
	ID       string    `json:"id,omitempty"`
	Epoch    int       `json:"epoch"`
	Consumed int       `json:"consumed"`
	Rows     int64     `json:"rows"`
	SeenAt   time.Time `json:"seen_at,omitzero"`
}

// FetchSummary counts ranges by state over every read pass, and lease hand-overs.
type FetchSummary struct {
	Pending  int   `json:"pending"`
	Leased   int   `json:"leased"`
	Done     int   `json:"done"`
	Expired  int   `json:"expired_leases"`
	Released int   `json:"released_leases"`
	RowsRead int64 `json:"rows_read"`
}

// LeaseInfo describes one lease in flight, for operators.
type LeaseInfo struct {
	ID        string    `json:"lease_id"`
	Pass      int       `json:"pass"`
	Range     int       `json:"range"`
	Worker    string    `json:"worker"`
	NextPage  int       `json:"next_page"`
	Rows      int64     `json:"rows"`
	ExpiresAt time.Time `json:"expires_at"`
	Grants    int       `json:"grants"`
}

// ErrorResponse is the body of every 4xx/5xx answer. Field names the spec field at fault.
type ErrorResponse struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

// ClaimRequest and ClaimResponse: a trainer asks for a job to train.
type ClaimRequest struct {
	TrainerID string `json:"trainer_id"`
}

type ClaimResponse struct {
	JobID string `json:"job_id"`
}
