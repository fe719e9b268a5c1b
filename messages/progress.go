package messages

import "time"

// Lease is a fetcher's claim on one range of one read pass, as granted by the coordinator.
// A fetcher that takes over an expired lease resumes at NextPage after LastKey, and so
// produces exactly the pages the first holder would have.
type Lease struct {
	Version  int      `json:"version"`
	ID       string   `json:"lease_id"`
	JobID    string   `json:"job_id"`
	Pass     int      `json:"pass"`
	Range    KeyRange `json:"range"`
	NextPage int      `json:"next_page"`
	// LastKey is the key of the last row published; meaningful when NextPage > 0.
	LastKey int64 `json:"last_key"`
	// LastKeyText is that key's text for a typed key.
	LastKeyText []string `json:"last_key_text,omitempty"`
	// Rows is the number of rows recorded as published so far, from which a resuming holder
	// keeps counting (LeaseProgress.Rows is cumulative over the range).
	Rows      int64     `json:"rows,omitempty"`
	ExpiresAt time.Time `json:"expires_at"`
}

// LeaseRequest asks for work; WorkerID names the fetcher in status and logs.
type LeaseRequest struct {
	WorkerID string `json:"worker_id"`
}

// LeaseProgress renews a lease and records the pages published so far. It is idempotent:
// the coordinator never moves a lease backwards.
type LeaseProgress struct {
	WorkerID string `json:"worker_id"`
	NextPage int    `json:"next_page"`
	LastKey  int64  `json:"last_key"`
	// LastKeyText is the last key's text for a typed key.
	LastKeyText []string `json:"last_key_text,omitempty"`
	Rows        int64    `json:"rows"`
	// Done marks the range complete (its last page is published); Release hands it back.
	Done    bool `json:"done,omitempty"`
	Release bool `json:"release,omitempty"`
}

// TrainerProgress is what the trainer reports: where it is in the epoch's range order
// (which moves the lease window) and, at the end of an epoch, its result.
type TrainerProgress struct {
	Version   int    `json:"version"`
	TrainerID string `json:"trainer_id"`
	Epoch     int    `json:"epoch"`
	// Consumed is how many ranges of this epoch's order the trainer has fully read.
	Consumed int          `json:"consumed"`
	Rows     int64        `json:"rows"`
	Result   *EpochResult `json:"result,omitempty"`
	// Done is set once after the last epoch, when the model is exported (to ModelDir).
	Done bool `json:"done,omitempty"`
	// Stopped, with Done, says why training ended before its last epoch (early stopping).
	Stopped string `json:"stopped,omitempty"`
	// BestEpoch, with Done, is the epoch the early stopping or model checkpoint callback
	// found best (0-based), when the job has one.
	BestEpoch *int   `json:"best_epoch,omitempty"`
	Error     string `json:"error,omitempty"`
	// Variant is the sweep variant the report is about (ClaimResponse.Variant).
	Variant *int `json:"variant,omitempty"`
}

// ModelDir is where a trainer exports a job's model, relative to the trainer's out dir. The
// coordinator reports it as the job's model path: it never takes a path from a client.
func ModelDir(jobID string) string { return jobID + "/model" }

// BestModelDir is where a trainer exports the best epoch's model of a job with
// model_checkpoint, relative to its out dir; the model store holds it as BestModelID.
func BestModelDir(jobID string) string { return jobID + "/model-best" }

// BestModelID is the model store's name of a job's best-epoch model.
func BestModelID(jobID string) string { return jobID + "_best" }

// FailRequest ends a job as failed. Only a worker of the job may: a trainer names itself
// (the job's trainer), a fetcher names itself and the lease it holds on one of the job's
// ranges, a preprocessor names the RAW page it cannot process (of a range that was read).
type FailRequest struct {
	Error     string   `json:"error"`
	TrainerID string   `json:"trainer_id,omitempty"`
	WorkerID  string   `json:"worker_id,omitempty"`
	LeaseID   string   `json:"lease_id,omitempty"`
	Batch     *BatchID `json:"batch,omitempty"`
	// Variant, with TrainerID, is the sweep variant the trainer trains.
	Variant *int `json:"variant,omitempty"`
}

// EpochResult is one finished epoch.
type EpochResult struct {
	Epoch         int                `json:"epoch"`
	Loss          float64            `json:"loss"`
	Metrics       map[string]float64 `json:"metrics,omitempty"`
	ValLoss       *float64           `json:"val_loss,omitempty"`
	ValMetrics    map[string]float64 `json:"val_metrics,omitempty"`
	Seen          KeyChecksum        `json:"seen"`
	SeenValid     KeyChecksum        `json:"seen_validation"`
	Seconds       float64            `json:"seconds"`
	RowsPerSecond float64            `json:"rows_per_second"`
	// LearningRate is the optimizer's rate at the end of the epoch (before a
	// ReduceLROnPlateau change), as Keras logs it.
	LearningRate float64 `json:"learning_rate,omitempty"`
	// Best marks the best epoch so far by the monitored metric of model_checkpoint, or else
	// of early_stopping.
	Best bool `json:"best,omitempty"`
}
