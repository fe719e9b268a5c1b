package messages

import "time"

// Job states.
const (
	JobPlanning = "planning"
	JobRunning  = "running"
	JobDone     = "done"
	JobFailed   = "failed"
	// JobCancelled: a user cancelled the job (POST /v1/jobs/{id}/cancel); the trainer keeps
	// its last checkpoint.
	JobCancelled = "cancelled"
	// JobNothingNew: a job with since "last" found no row after the stored model's last key;
	// it ended at once, without a model of its own (the stored one stays current).
	JobNothingNew = "nothing_new"
)

// JobStates are every state a job can be in, for validating a state filter.
var JobStates = []string{JobPlanning, JobRunning, JobDone, JobFailed, JobCancelled, JobNothingNew}

// JobEnded reports whether a job in state is finished for good: nothing leases or trains it.
func JobEnded(state string) bool {
	return state == JobDone || state == JobFailed || state == JobCancelled || state == JobNothingNew
}

// JobList is what GET /v1/jobs answers: one page of jobs, oldest first. Next, when set, is
// the opaque cursor of the following page (?cursor=Next).
type JobList struct {
	Version int         `json:"version"`
	Jobs    []JobStatus `json:"jobs"`
	Next    string      `json:"next,omitempty"`
}

// JobStatus is what GET /v1/jobs/{id} answers: state, progress, per-epoch results and the
// leases in flight. It never contains a connection string.
type JobStatus struct {
	Version int    `json:"version"`
	ID      string `json:"id"`
	State   string `json:"state"`
	Error   string `json:"error,omitempty"`
	// Reason says why a job that did not fail ended as it did (nothing_new).
	Reason    string        `json:"reason,omitempty"`
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
	// StopReason says why training ended before its last epoch (early stopping).
	StopReason string `json:"stop_reason,omitempty"`
	// BestEpoch is the best epoch (0-based) by the monitored metric of model_checkpoint or
	// early_stopping; BestModelPath and BestModelID are where model_checkpoint's model is.
	BestEpoch     *int   `json:"best_epoch,omitempty"`
	BestModelPath string `json:"best_model_path,omitempty"`
	BestModelID   string `json:"best_model_id,omitempty"`
	// Kind is "prediction" for a prediction job, empty for training.
	Kind       string            `json:"kind,omitempty"`
	Prediction *PredictionStatus `json:"prediction,omitempty"`
	// WarmStart is set for a job that started from a stored model (init_from): which one,
	// from which key, and the rows the stored model saw and this job reads.
	WarmStart *WarmStart `json:"warm_start,omitempty"`
	// Sweep is set for a sweep job: every variant's progress, results and model, and the
	// best one once all are done. The job's Trainer is then its slowest variant's position
	// (counted in that variant's range order) and ModelPath the best variant's model.
	Sweep *SweepStatus `json:"sweep,omitempty"`
}

// SweepStatus is a sweep job's variants and which is best by Monitor (Mode min or max, as
// resolved from auto), judged on each variant's last epoch.
type SweepStatus struct {
	Monitor  string          `json:"monitor"`
	Mode     string          `json:"mode"`
	Best     *int            `json:"best,omitempty"`
	Variants []VariantStatus `json:"variants"`
}

// VariantStatus is one variant of a sweep job.
type VariantStatus struct {
	Index     int           `json:"index"`
	Overrides SweepVariant  `json:"overrides"`
	State     string        `json:"state"`
	Error     string        `json:"error,omitempty"`
	Trainer   TrainerState  `json:"trainer"`
	Results   []EpochResult `json:"results,omitempty"`
	// Value is the monitor's value at the variant's last epoch; Best marks the best variant.
	Value *float64 `json:"value,omitempty"`
	Best  bool     `json:"best,omitempty"`
	// ModelPath (under the trainer's out dir) and ModelID (in the model store) are where
	// the variant's model is once it is done.
	ModelPath     string `json:"model_path,omitempty"`
	ModelID       string `json:"model_id,omitempty"`
	StopReason    string `json:"stop_reason,omitempty"`
	BestEpoch     *int   `json:"best_epoch,omitempty"`
	BestModelPath string `json:"best_model_path,omitempty"`
	BestModelID   string `json:"best_model_id,omitempty"`
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
	Score         StreamStatus   `json:"score"` // the pages of prediction jobs
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
	// JobState is the job's state when the request is refused because of it (a 409): a
	// trainer told "cancelled" stops as asked instead of reporting a failure.
	JobState string `json:"job_state,omitempty"`
}

// ClaimRequest and ClaimResponse: a trainer asks for a job to train.
type ClaimRequest struct {
	TrainerID string `json:"trainer_id"`
}

type ClaimResponse struct {
	JobID string `json:"job_id"`
	// Variant is set for a sweep job: the trainer trains this variant (and reports with it).
	Variant *int `json:"variant,omitempty"`
}

// The states of a key range in JobRanges, in the order a range goes through them.
const (
	RangePlanned = "planned" // no fetcher holds it (never leased, or its lease expired)
	RangeLeased  = "leased"  // a fetcher holds it and is publishing its pages
	RangeFetched = "fetched" // every page is published; the trainer has not read it yet
	RangeTrained = "trained" // the trainer has read every row of it in this epoch
)

// JobRanges is what GET /v1/jobs/{id}/ranges answers: where each key range of the epoch the
// trainer is in stands, for the dashboard. It holds counts and worker ids, never a key or
// any other value of the table.
type JobRanges struct {
	Version int    `json:"version"`
	JobID   string `json:"job_id"`
	// Epoch is the epoch shown (0-based), Pass the read pass its batches come from.
	Epoch  int          `json:"epoch"`
	Pass   int          `json:"pass"`
	Ranges []RangeState `json:"ranges"`
}

// RangeState is one key range of JobRanges, in key order.
type RangeState struct {
	Index int    `json:"index"`
	State string `json:"state"`
	// Worker is the fetcher that holds a leased range.
	Worker string `json:"worker,omitempty"`
	// Rows is the range's planned row count; RowsRead what its fetchers published so far.
	Rows     int64 `json:"rows"`
	RowsRead int64 `json:"rows_read"`
	// Validation marks a range held out for validation.
	Validation bool `json:"validation,omitempty"`
}
