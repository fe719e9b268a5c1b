package messages

// TrainingStateFile is the file of a stored model that holds its training state: the
// engine's checkpoint of the finished model (weights, optimizer slots and step count,
// random streams), which a job with init_from continues from. TF.js ignores it.
const TrainingStateFile = "training-state.bin"

// WarmStart is how a job starts from a stored model (JobSpec.InitFrom), as planned. A
// plan without it starts from fresh weights.
type WarmStart struct {
	// InitFrom is the stored model's job id; Preprocessing and Since are the spec's.
	InitFrom      string `msgpack:"init_from" json:"init_from"`
	Preprocessing string `msgpack:"preprocessing" json:"preprocessing"`
	Since         string `msgpack:"since,omitempty" json:"since,omitempty"`
	// AfterKey is, with Since "last", the stored model's last key: the job reads only the
	// keys after it.
	// AfterKeyText is that key's text for a typed key (AfterKey is then 0).
	AfterKey     int64    `msgpack:"after_key" json:"after_key"`
	AfterKeyText []string `msgpack:"after_key_text,omitempty" json:"after_key_text,omitempty"`
	// InitialEpoch is how many epochs the stored model was trained for, counting those of
	// the models it started from. This job's epoch e is the model's epoch InitialEpoch+e,
	// which the range order and the row shuffle are drawn for (Keras's initial_epoch), so
	// that 3 epochs and then 2 more see the data as one job of 5 does.
	InitialEpoch int `msgpack:"initial_epoch" json:"initial_epoch"`
	// RowsBefore is the stored model's training rows; Rows this job's (training and
	// validation), as planned.
	RowsBefore int64 `msgpack:"rows_before" json:"rows_before"`
	Rows       int64 `msgpack:"rows" json:"rows"`
}

// ModelEpoch is the model's epoch number of the job's epoch e: e itself for a job that
// starts from fresh weights, e plus the stored model's epochs for a warm start.
func (p *Plan) ModelEpoch(e int) int {
	if p.WarmStart == nil {
		return e
	}
	return p.WarmStart.InitialEpoch + e
}

// EpochsTrained is how many epochs a model written by this build was trained for, counting
// those of the models it started from; 0 when unknown (metadata of an older build).
func (m ModelMeta) EpochsTrained() int {
	if m.Epochs > 0 {
		return m.Epochs
	}
	return m.Spec.Epochs
}
