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
	// Kind is "prediction" for a prediction job, empty for training.
	Kind       string            `json:"kind,omitempty"`
	Prediction *PredictionStatus `json:"prediction,omitempty"`
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
	Pending  int `json:"pending"`
	Leased   int `json:"leased"`
	Done     int `json:"done"`
	Expired  int `json:"expired_leases"`
	Released int `json:"released_leases"`
	// Grants counts leases handed out; Resumed those that continued a range another holder
	// had started (from its last recorded page).
	Grants   int   `json:"grants"`
	Resumed  int   `json:"resumed_leases"`
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

// BusStatus is what GET /v1/bus answers: the streams and the preprocessors' shared consumer,
// so that an operator sees pages waiting, in flight and redelivered, and how full READY is.
type BusStatus struct {
	Version       int            `json:"version"`
	Raw           StreamStatus   `json:"raw"`
	Ready         StreamStatus   `json:"ready"`
	Preprocessors ConsumerStatus `json:"preprocessors"`
}

// StreamStatus is one stream's content. LastSeq counts every message the stream ever
// accepted (a duplicate refused by its message id does not count).
type StreamStatus struct {
	Name     string `json:"name"`
	Messages uint64 `json:"messages"`
	Bytes    uint64 `json:"bytes"`
	MaxBytes int64  `json:"max_bytes"`
	LastSeq  uint64 `json:"last_seq"`
}

// ConsumerStatus is the preprocessors' RAW consumer.
type ConsumerStatus struct {
	// Pending pages are not delivered yet; AckPending are delivered and not acknowledged.
	Pending    uint64 `json:"pending"`
	AckPending int    `json:"ack_pending"`
	// Redelivering pages are delivered again and not acknowledged yet.
	Redelivering int `json:"redelivering"`
	// Deliveries counts every delivery since the consumer was created; Redeliveries those
	// beyond a page's first (a preprocessor died or stopped holding it, or an
	// acknowledgement was lost). Exact as long as RAW pages leave the stream only by being
	// acknowledged, which is how pgtrain uses RAW.
	Deliveries    uint64 `json:"deliveries"`
	Redeliveries  uint64 `json:"redeliveries"`
	AckWaitMillis int64  `json:"ack_wait_ms"`
	MaxDeliver    int    `json:"max_deliver"`
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
