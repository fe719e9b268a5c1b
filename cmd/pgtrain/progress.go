package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"pgtrain/coordinator/client"
	"pgtrain/messages"
)

// follow polls a job until it ends, printing a progress line now and then and one line per
// finished epoch. It prints plain lines (no cursor tricks) so logs and CI read well.
func follow(ctx context.Context, c *client.Client, id string, w io.Writer, every time.Duration) (*messages.JobStatus, error) {
	printed := 0
	lastLine := ""
	start := time.Now()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		st, err := c.Job(ctx, id)
		if err != nil {
			return nil, err
		}
		for ; printed < len(st.Results); printed++ {
			fmt.Fprintln(w, epochLine(st, st.Results[printed]))
		}
		switch st.State {
		case messages.JobDone, messages.JobFailed:
			return st, nil
		}
		if line := progressLine(st, time.Since(start)); line != lastLine {
			fmt.Fprintln(w, line)
			lastLine = line
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-tick.C:
		}
	}
}

func epochLine(st *messages.JobStatus, r messages.EpochResult) string {
	line := fmt.Sprintf("epoch %d/%d  loss=%.6f", r.Epoch+1, st.Epochs, r.Loss)
	if r.ValLoss != nil {
		line += fmt.Sprintf("  val_loss=%.6f", *r.ValLoss)
	}
	for _, name := range sortedKeys(r.Metrics) {
		line += fmt.Sprintf("  %s=%.4f", name, r.Metrics[name])
	}
	return line + fmt.Sprintf("  rows=%d  %.1fs  %.0f rows/s", r.Seen.Rows, r.Seconds, r.RowsPerSecond)
}

func progressLine(st *messages.JobStatus, elapsed time.Duration) string {
	if st.State == messages.JobPlanning {
		return "planning..."
	}
	f := st.Fetch
	total := f.Pending + f.Leased + f.Done
	if p := st.Prediction; p != nil {
		return fmt.Sprintf("  [%s] written %d/%d ranges (%d rows); fetched %d/%d ranges, %d leased",
			elapsed.Truncate(time.Second), p.RangesScored, st.Ranges, p.Written.Rows, f.Done, total, f.Leased)
	}
	return fmt.Sprintf("  [%s] epoch %d/%d: trained %d/%d ranges (%d rows); fetched %d/%d ranges, %d leased",
		elapsed.Truncate(time.Second), st.Trainer.Epoch+1, st.Epochs, st.Trainer.Consumed, st.Ranges,
		st.Trainer.Rows, f.Done, total, f.Leased)
}

// printBus shows the streams and the preprocessors' consumer: what waits, what is in
// flight, what was redelivered, and how full READY is.
func printBus(w io.Writer, b *messages.BusStatus) {
	p := b.Preprocessors
	fmt.Fprintf(w, "RAW: %d pages (%s) waiting, %d accepted in all; preprocessors: %d pending, %d in flight, %d being redelivered, %d deliveries of which %d redeliveries (ack wait %s)\n",
		b.Raw.Messages, byteSize(b.Raw.Bytes), b.Raw.LastSeq, p.Pending, p.AckPending, p.Redelivering,
		p.Deliveries, p.Redeliveries, time.Duration(p.AckWaitMillis)*time.Millisecond)
	limit := "no limit"
	if b.Ready.MaxBytes > 0 {
		limit = byteSize(uint64(b.Ready.MaxBytes))
	}
	fmt.Fprintf(w, "READY: %d batches, %s of %s\n", b.Ready.Messages, byteSize(b.Ready.Bytes), limit)
}

func byteSize(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func printStatus(w io.Writer, st *messages.JobStatus) {
	fmt.Fprintf(w, "job %s: %s (table %s, %d rows, %d ranges, %d epochs, replay %v)\n",
		st.ID, st.State, st.Table, st.Rows, st.Ranges, st.Epochs, st.Replay)
	if st.Error != "" {
		fmt.Fprintf(w, "error: %s\n", st.Error)
	}
	f := st.Fetch
	fmt.Fprintf(w, "fetch: %d pending, %d leased, %d done; %d rows read; %d leases granted, %d expired, %d released, %d resumed mid-range\n",
		f.Pending, f.Leased, f.Done, f.RowsRead, f.Grants, f.Expired, f.Released, f.Resumed)
	if st.Prediction != nil {
		fmt.Fprintln(w, predictionLine(st))
	}
	switch {
	case st.Trainer.ID == "":
	case st.Trainer.Epoch >= st.Epochs: // the final report's position is past the last epoch
		fmt.Fprintf(w, "trainer %s: all %d epochs trained\n", st.Trainer.ID, st.Epochs)
	default:
		fmt.Fprintf(w, "trainer %s: epoch %d, %d ranges consumed, %d rows\n", st.Trainer.ID, st.Trainer.Epoch+1, st.Trainer.Consumed, st.Trainer.Rows)
	}
	for _, l := range st.Leases {
		fmt.Fprintf(w, "  lease %s: pass %d range %d, worker %s, next page %d, %d rows, expires %s, granted %d times\n",
			l.ID, l.Pass, l.Range, l.Worker, l.NextPage, l.Rows, l.ExpiresAt.Format(time.TimeOnly), l.Grants)
	}
	for _, r := range st.Results {
		fmt.Fprintln(w, epochLine(st, r))
	}
	if st.ModelPath != "" {
		fmt.Fprintf(w, "model: %s, under the --out-dir of trainer %s\n", st.ModelPath, st.Trainer.ID)
	}
}

// predictionLine sums up a prediction job: where its rows went and, when the table held
// the label, the model's loss and metrics on them.
func predictionLine(st *messages.JobStatus) string {
	p := st.Prediction
	line := fmt.Sprintf("prediction: model %s, %s into %s (%s): %d rows written, %d/%d ranges",
		p.Model, p.Task, p.Output, p.Mode, p.Written.Rows, p.RangesScored, st.Ranges)
	if p.Loss != nil {
		line += fmt.Sprintf("; evaluation loss=%.6f", *p.Loss)
		for _, name := range sortedKeys(p.Metrics) {
			line += fmt.Sprintf("  %s=%.4f", name, p.Metrics[name])
		}
	}
	return line
}
