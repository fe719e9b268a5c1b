package trainer

import (
	"bytes"
	"context"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"pgtrain/internal/bus"
	"pgtrain/messages"
	"pgtrain/model"
)

// storedAtDone checks, when the job is reported done, that its model is already stored.
type storedAtDone struct {
	*testCoordinator
	b          *bus.Bus
	storedDone chan error
}

func (c *storedAtDone) ReportTrainer(ctx context.Context, jobID string, p messages.TrainerProgress) error {
	if p.Done {
		_, err := c.b.Model(ctx, jobID)
		c.storedDone <- err
	}
	return c.testCoordinator.ReportTrainer(ctx, jobID, p)
}

func TestFinishedModelCarriesItsMetadataAndIsStored(t *testing.T) {
	b := testBus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const job = "export-meta"
	d := dataset{job: job, rangeRows: []int{10, 12, 8}, validation: 1, pageRows: 4, epochs: 2, batch: 5, seed: 3}
	p := d.plan()
	storePlan(t, b, p)
	for _, rb := range d.batches(p) {
		if err := publish(ctx, b, rb); err != nil {
			t.Fatal(err)
		}
	}
	out := t.TempDir()
	c := &storedAtDone{testCoordinator: newTestCoordinator(job), b: b, storedDone: make(chan error, 2)}
	if err := trainOnce(t, ctx, b, c, Config{TrainerID: "exp", OutDir: out}, nil); err != nil {
		t.Fatal(err)
	}
	if err := <-c.storedDone; err != nil {
		t.Fatalf("the job was reported done before its model was stored: %v", err)
	}

	dir := filepath.Join(out, job, "model")
	js, err := os.ReadFile(filepath.Join(dir, model.TFJSModelFile))
	if err != nil {
		t.Fatal(err)
	}
	meta, err := model.ReadMeta(js)
	if err != nil {
		t.Fatal(err)
	}
	hist := readHistory(t, filepath.Join(out, job, "history.json"))
	last := hist[len(hist)-1]
	wantMetrics := map[string]float64{"loss": last.Loss, "mae": last.Metrics["mae"], "val_loss": *last.ValLoss, "val_mae": last.ValMetrics["mae"]}
	if !reflect.DeepEqual(meta.Metrics, wantMetrics) {
		t.Errorf("metrics %v, want the last epoch's %v", meta.Metrics, wantMetrics)
	}
	if meta.JobID != job || meta.Rows != p.Expected.Rows || meta.Checksum != p.Expected || meta.LastKey != keyOf(29) {
		t.Errorf("job %q rows %d checksum %+v last key %d; want %s, %d, %+v, %d",
			meta.JobID, meta.Rows, meta.Checksum, meta.LastKey, job, p.Expected.Rows, p.Expected, keyOf(29))
	}
	if !reflect.DeepEqual(meta.Features, p.Features) || meta.LabelKind != messages.LabelRegression || meta.InputDim != p.InputDim {
		t.Errorf("features %+v kind %s input %d; want the plan's", meta.Features, meta.LabelKind, meta.InputDim)
	}

	stored := func() map[string][]byte {
		t.Helper()
		m, err := b.Model(ctx, job)
		if err != nil {
			t.Fatal(err)
		}
		files := map[string][]byte{}
		for _, f := range m.Files {
			if files[f.Name], err = b.ModelFile(ctx, job, f.Name); err != nil {
				t.Fatal(err)
			}
		}
		return files
	}
	first := stored()
	for name, body := range first {
		local, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(local, body) {
			t.Errorf("stored %s differs from the exported one (%v)", name, err)
		}
	}
	names := slices.Sorted(maps.Keys(first))
	if want := []string{"group1-shard1of1.bin", "model.json", messages.TrainingStateFile}; !slices.Equal(names, want) {
		t.Errorf("stored files %v, want model.json, one shard and the training state %v", names, want)
	}
	if meta.TrainingState != messages.TrainingStateFile || meta.Epochs != p.Spec.Epochs || meta.WarmStart != nil {
		t.Errorf("training state %q, epochs %d, warm start %+v; want %q, %d and none",
			meta.TrainingState, meta.Epochs, meta.WarmStart, messages.TrainingStateFile, p.Spec.Epochs)
	}

	// A trainer restarted after the last checkpoint (its Done report lost) exports and
	// stores the same model again.
	c2 := &storedAtDone{testCoordinator: newTestCoordinator(job), b: b, storedDone: make(chan error, 2)}
	if err := trainOnce(t, ctx, b, c2, Config{TrainerID: "exp", OutDir: out}, nil); err != nil {
		t.Fatal(err)
	}
	if err := <-c2.storedDone; err != nil {
		t.Fatal(err)
	}
	if again := stored(); !reflect.DeepEqual(again, first) {
		t.Fatal("the restarted trainer stored a different model")
	}
}
