package faults

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pgtrain/internal/testenv"
	"pgtrain/messages"
)

// pgtrainCLI runs a user's command of the binary against the cluster's coordinator.
func (c *cluster) pgtrainCLI(args ...string) (string, int) {
	cmd := exec.Command(binary, append(args[:1:1], append([]string{"--coordinator", c.coordURL, "--coordinator-token-file", c.tokens.User}, args[1:]...)...)...)
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		code = -1
		if cmd.ProcessState != nil {
			code = cmd.ProcessState.ExitCode()
		}
	}
	return string(out), code
}

// `pgtrain cancel` in the middle of a job, every role its own process: the trainer process
// (--once) stops on its own and exits 0, keeping its checkpoint and exporting no model; no
// range is leased after the cancel; the pages in flight drain. `pgtrain delete` refuses the
// running job, then removes the cancelled one: its batches, its status.
func TestCancelAndDeleteAJobInFlight(t *testing.T) {
	c := startCluster(t, clusterOptions{
		readyMaxBytes: replayMaxBytes,
		// The slow trainer keeps the job running long enough to cancel it mid-epoch.
		trainerArgs: []string{"--once", "--step-delay", "25ms"},
	})
	ctx := context.Background()
	st, err := c.client.Submit(ctx, jobSpec(table, ""))
	if err != nil {
		t.Fatal(err)
	}
	id := st.ID
	checkpoint := filepath.Join(c.dir, "models", id, "checkpoint")
	testenv.Eventually(t, 3*time.Minute, "the trainer to checkpoint a range", func() bool {
		s, err := c.status(id)
		if err != nil {
			t.Fatal(err)
		}
		if s.State != messages.JobRunning {
			t.Fatalf("job %s before the cancel: %s %s", id, s.State, s.Error)
		}
		_, err = os.Stat(checkpoint)
		return s.Trainer.Consumed > 0 && err == nil
	})

	out, code := c.pgtrainCLI("delete", id)
	if code != 1 || !strings.Contains(out, "is running: cancel it first") {
		t.Fatalf("pgtrain delete of a running job exited %d:\n%s", code, out)
	}
	out, code = c.pgtrainCLI("cancel", id)
	if code != 0 || !strings.Contains(out, "job "+id+" cancelled") {
		t.Fatalf("pgtrain cancel exited %d:\n%s", code, out)
	}
	t.Logf("pgtrain cancel %s:\n%s", id, out)
	cancelled, err := c.status(id)
	if err != nil {
		t.Fatal(err)
	}

	select {
	case <-c.trainer.exited():
	case <-time.After(2 * time.Minute):
		t.Fatalf("the trainer still runs two minutes after the cancel:\n%s", c.trainer.tail(20))
	}
	if st := c.trainer.exitState(); st.ExitCode() != 0 {
		t.Fatalf("the trainer exited %s after the cancel, want 0:\n%s", describeExit(c.trainer), c.trainer.tail(20))
	}
	if n := countLogs([]*proc{c.trainer}, "job cancelled; training stopped"); n != 1 {
		t.Errorf("the trainer logged the cancel %d times, want once", n)
	}
	if _, err := os.Stat(checkpoint); err != nil {
		t.Errorf("the checkpoint is gone after the cancel: %v", err)
	}
	if _, err := os.Stat(filepath.Join(c.dir, "models", filepath.FromSlash(messages.ModelDir(id)))); !os.IsNotExist(err) {
		t.Errorf("a cancelled job exported a model (%v)", err)
	}
	// The pages in flight drain: RAW empties (the cancel purged it, and the preprocessors
	// take what a fetcher published after that).
	testenv.Eventually(t, time.Minute, "RAW to drain", func() bool {
		b, err := c.bus()
		if err != nil {
			t.Fatal(err)
		}
		return b.Raw.Messages == 0 && b.Preprocessors.AckPending == 0
	})
	after, err := c.status(id)
	if err != nil {
		t.Fatal(err)
	}
	if after.State != messages.JobCancelled || after.Fetch.Grants != cancelled.Fetch.Grants {
		t.Fatalf("after the trainer stopped: %s with %d grants; at the cancel %d: want no lease granted since",
			after.State, after.Fetch.Grants, cancelled.Fetch.Grants)
	}

	out, code = c.pgtrainCLI("delete", id)
	if code != 0 || !strings.Contains(out, "job "+id+" deleted") {
		t.Fatalf("pgtrain delete exited %d:\n%s", code, out)
	}
	b, err := c.bus()
	if err != nil {
		t.Fatal(err)
	}
	if b.Raw.Messages != 0 || b.Ready.Messages != 0 {
		t.Errorf("after the delete RAW holds %d pages and READY %d batches; want none", b.Raw.Messages, b.Ready.Messages)
	}
	out, code = c.pgtrainCLI("status", id)
	if code == 0 || !strings.Contains(out, "not found") {
		t.Errorf("pgtrain status of the deleted job exited %d:\n%s", code, out)
	}
	out, code = c.pgtrainCLI("cancel", id)
	if code == 0 || !strings.Contains(out, "not found") {
		t.Errorf("pgtrain cancel of the deleted job exited %d:\n%s", code, out)
	}
}
