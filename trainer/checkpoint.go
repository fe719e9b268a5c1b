package trainer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/vmihailenco/msgpack/v5"

	"pgtrain/messages"
)

// checkpointVersion changes whenever the layout below changes; an older file is refused,
// not misread.
const checkpointVersion = 1

// position is the trainer's place in a job: everything besides the model that decides what
// happens next. Together with the model's own checkpoint it makes a resumed job continue
// exactly where the stopped one was.
type position struct {
	// Epoch is the current epoch; Consumed the ranges of EpochOrder(Epoch) fully read.
	Epoch    int `msgpack:"epoch"`
	Consumed int `msgpack:"consumed"`
	// Offset is how many rows of the (shuffled) range at Consumed were already fed to the
	// model: non-zero only when the trainer stopped in the middle of a range.
	Offset int `msgpack:"offset"`
	// Pending holds rows waiting to fill the next batch: the carry-over from the ranges
	// read so far.
	Pending pendingRows `msgpack:"pending"`
	// Train and Valid are the epoch's running row-weighted sums.
	Train accum `msgpack:"train"`
	Valid accum `msgpack:"valid"`
	// Seen and SeenValid are the epoch's key checksums so far.
	Seen      messages.KeyChecksum `msgpack:"seen"`
	SeenValid messages.KeyChecksum `msgpack:"seen_valid"`
	// Seconds of wall time spent in the epoch so far (across restarts).
	Seconds float64 `msgpack:"seconds"`
	// Results of the finished epochs.
	Results []messages.EpochResult `msgpack:"results"`
	// Finished is set once every epoch is done; only the export and the final report remain.
	Finished bool `msgpack:"finished"`
	// LastKey is the largest key read so far (any epoch, training or validation), when
	// AnyKey; the model's metadata records it.
	LastKey int64 `msgpack:"last_key"`
	AnyKey  bool  `msgpack:"any_key"`
	// Callbacks is the state of the job's training controls (callbacks.go).
	Callbacks callbackState `msgpack:"callbacks"`
}

// pendingRows are rows not yet part of a finished batch.
type pendingRows struct {
	Keys []int64   `msgpack:"keys"`
	X    []float32 `msgpack:"x"`
	Y    []float32 `msgpack:"y"`
	// W holds their sample weights with a sample weight column.
	W []float32 `msgpack:"w,omitempty"`
}

// accum sums batch values weighted by batch rows (Σ value × rows, Σ rows), as Keras's loss
// tracker and its (unweighted) compiled metrics.
type accum struct {
	Rows int64              `msgpack:"rows"`
	Sums map[string]float64 `msgpack:"sums"`
}

func (a *accum) add(values map[string]float64, rows int) {
	if a.Sums == nil {
		a.Sums = map[string]float64{}
	}
	for k, v := range values {
		a.Sums[k] += v * float64(rows)
	}
	a.Rows += int64(rows)
}

// means splits the averages into the loss and the rest.
func (a *accum) means() (loss float64, metrics map[string]float64) {
	if a.Rows == 0 {
		return 0, nil
	}
	for k, s := range a.Sums {
		v := s / float64(a.Rows)
		if k == "loss" {
			loss = v
			continue
		}
		if metrics == nil {
			metrics = map[string]float64{}
		}
		metrics[k] = v
	}
	return loss, metrics
}

type checkpointFile struct {
	Version  int      `msgpack:"v"`
	JobID    string   `msgpack:"job"`
	Position position `msgpack:"position"`
	Model    []byte   `msgpack:"model"`
}

func checkpointPath(jobDir string) string { return filepath.Join(jobDir, "checkpoint") }

// saveCheckpoint replaces the job's checkpoint atomically: a reader (a restarted trainer)
// sees the previous checkpoint or the new one, never half of one.
func saveCheckpoint(jobDir, jobID string, pos *position, m Model) error {
	b, err := encodeCheckpoint(jobID, pos, m)
	if err != nil {
		return err
	}
	return writeCheckpoint(jobDir, b)
}

// encodeCheckpoint is the checkpoint's bytes: taken at once, so that the model and the
// position may move on while they are written.
func encodeCheckpoint(jobID string, pos *position, m Model) ([]byte, error) {
	weights, err := m.MarshalCheckpoint()
	if err != nil {
		return nil, fmt.Errorf("checkpointing the model: %w", err)
	}
	b, err := msgpack.Marshal(&checkpointFile{Version: checkpointVersion, JobID: jobID, Position: *pos, Model: weights})
	if err != nil {
		return nil, fmt.Errorf("encoding the checkpoint: %w", err)
	}
	return b, nil
}

func writeCheckpoint(jobDir string, b []byte) error {
	if err := writeFileAtomic(checkpointPath(jobDir), b); err != nil {
		return fmt.Errorf("writing the checkpoint: %w", err)
	}
	return nil
}

// loadCheckpoint returns the job's checkpoint, or nil when there is none.
func loadCheckpoint(jobDir, jobID string) (*checkpointFile, error) {
	b, err := os.ReadFile(checkpointPath(jobDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the checkpoint: %w", err)
	}
	var c checkpointFile
	if err := messages.CheckLengths(b); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", checkpointPath(jobDir), ErrBadCheckpoint, err)
	}
	if err := msgpack.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", checkpointPath(jobDir), ErrBadCheckpoint, err)
	}
	if c.Version != checkpointVersion {
		return nil, fmt.Errorf("%s: version %d, this build reads %d: %w", checkpointPath(jobDir), c.Version, checkpointVersion, ErrBadCheckpoint)
	}
	if c.JobID != jobID {
		return nil, fmt.Errorf("%s belongs to job %q: %w", checkpointPath(jobDir), c.JobID, ErrBadCheckpoint)
	}
	return &c, nil
}

// writeFileAtomic writes to a temporary file in the same directory, syncs it and renames it
// over path, then syncs the directory so the rename itself survives a power cut.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
