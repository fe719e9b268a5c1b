package main

import (
	"bytes"
	"strings"
	"testing"

	"pgtrain/messages"
)

func TestSweepStatusLines(t *testing.T) {
	lr, a, b := 0.01, 0.25, 0.5
	best := 1
	st := &messages.JobStatus{ID: "j", State: messages.JobRunning, Epochs: 2, Sweep: &messages.SweepStatus{
		Monitor: "val_loss", Mode: "min", Variants: []messages.VariantStatus{
			{Index: 0, Overrides: messages.SweepVariant{LearningRate: &lr}, State: "running",
				Trainer: messages.TrainerState{ID: "t1", Epoch: 1, Consumed: 3}, Value: &b},
			{Index: 1, Overrides: messages.SweepVariant{Units: []int{8, 1}}, State: "done", Value: &a, Best: true,
				ModelID: "j_variant-1", ModelPath: "j/variant-1/model",
				Results: []messages.EpochResult{{Epoch: 0, Loss: 0.3, ValLoss: &a}}},
			{Index: 2, State: "running"},
		}}}
	var w bytes.Buffer
	printStatus(&w, st)
	for _, want := range []string{
		"sweep: 3 variants judged by val_loss (min)",
		`variant 0 {"learning_rate":0.01}: running, trainer t1 at epoch 2/2, 3 ranges consumed, last epoch 0.5000`,
		`variant 1 {"units":[8,1]}: done, last epoch 0.2500 (best); model j_variant-1 (j/variant-1/model)`,
		"  Epoch 1/2 - 0 rows",
		"variant 2 {}: running, waiting for a trainer",
	} {
		if !strings.Contains(w.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, w.String())
		}
	}
	st.Sweep.Best = &best
	st.ModelPath, st.Sweep.Variants[1].Trainer.ID = "j/variant-1/model", "t2"
	w.Reset()
	printStatus(&w, st)
	if want := "model: j/variant-1/model, under the --out-dir of trainer t2"; !strings.Contains(w.String(), want) {
		t.Errorf("status lacks %q:\n%s", want, w.String())
	}
	if got, want := sweepLine(st.Sweep), "best of 3 variants by val_loss (min): variant 1, val_loss 0.2500, stored as j_variant-1"; got != want {
		t.Errorf("sweepLine = %q, want %q", got, want)
	}
}
