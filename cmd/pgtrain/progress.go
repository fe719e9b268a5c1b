package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	"pgtrain/coordinator/client"
	"pgtrain/messages"
)

// liveEvery is how often a job is polled while a terminal shows its bar: often enough for
// rows/s and the ETA to move smoothly, seldom enough to cost the coordinator nothing.
const liveEvery = 500 * time.Millisecond

// follow polls a job until it ends. On a terminal it draws a bar per epoch (rows, rows/s,
// ETA) under the Keras-style epoch lines, or for a prediction job one bar of the rows
// written; anywhere else (a pipe, a log, CI) it prints plain lines, no cursor tricks: a
// progress line now and then and one line per finished epoch.
func follow(ctx context.Context, c *client.Client, id string, w io.Writer, every time.Duration) (*messages.JobStatus, error) {
	var rep reporter = &plainReporter{w: w}
	if isTerminal(w) {
		rep, every = newBarReporter(w), min(every, liveEvery)
	}
	defer rep.stop()
	printed := 0
	var printedVariants []int // a sweep's epochs printed, per variant
	start := time.Now()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		st, err := c.Job(ctx, id)
		if err != nil {
			return nil, err
		}
		for ; printed < len(st.Results); printed++ {
			rep.epoch(st, st.Results[printed])
		}
		if sw := st.Sweep; sw != nil {
			for len(printedVariants) < len(sw.Variants) {
				printedVariants = append(printedVariants, 0)
			}
			for i, v := range sw.Variants {
				for ; printedVariants[i] < len(v.Results); printedVariants[i]++ {
					rep.line(fmt.Sprintf("variant %d: %s", i, epochLine(st, v.Results[printedVariants[i]])))
				}
			}
		}
		if messages.JobEnded(st.State) {
			return st, nil
		}
		rep.progress(st, time.Since(start))
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-tick.C:
		}
	}
}

// reporter shows a followed job: each poll's progress and each finished epoch.
type reporter interface {
	progress(st *messages.JobStatus, elapsed time.Duration)
	epoch(st *messages.JobStatus, r messages.EpochResult)
	// line prints one line above the progress (a sweep variant's epoch).
	line(s string)
	stop()
}

// isTerminal reports whether w is a terminal (not a pipe, a file or a buffer).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// plainReporter prints the progress line when it changed, and the epoch lines.
type plainReporter struct {
	w    io.Writer
	last string
}

func (p *plainReporter) progress(st *messages.JobStatus, elapsed time.Duration) {
	if line := progressLine(st, elapsed); line != p.last {
		fmt.Fprintln(p.w, line)
		p.last = line
	}
}

func (p *plainReporter) epoch(st *messages.JobStatus, r messages.EpochResult) {
	fmt.Fprintln(p.w, epochLine(st, r))
}

func (p *plainReporter) line(s string) { fmt.Fprintln(p.w, s) }

func (p *plainReporter) stop() {}

// barReporter draws the current epoch's bar on the last line of the terminal; finished
// epochs' lines are printed above it. The rows/s and the ETA are moving averages over the
// polls, each weighted by the time it covers.
type barReporter struct {
	p        *mpb.Progress
	bar      *mpb.Bar
	barEpoch int
	barRows  int64
	lastPoll time.Time
	planning bool
}

func newBarReporter(w io.Writer) *barReporter {
	return &barReporter{p: mpb.New(mpb.WithOutput(w), mpb.WithWidth(30)), lastPoll: time.Now()}
}

func (b *barReporter) progress(st *messages.JobStatus, _ time.Duration) {
	now := time.Now()
	since := now.Sub(b.lastPoll)
	b.lastPoll = now
	if st.State == messages.JobPlanning {
		if !b.planning {
			fmt.Fprintln(b.p, "planning...")
			b.planning = true
		}
		return
	}
	if p := st.Prediction; p != nil {
		if st.Rows <= 0 {
			return
		}
		if b.bar == nil {
			b.bar, b.barRows = newRowsBar(b.p, "Scoring", st.Rows), st.Rows
		}
		b.bar.EwmaSetCurrent(min(p.Written.Rows, st.Rows), since)
		return
	}
	// An epoch's result comes with the trainer still at that epoch, all ranges consumed.
	e := st.Trainer.Epoch
	if st.Rows <= 0 || e >= st.Epochs || e < len(st.Results) {
		return
	}
	if b.bar != nil && b.barEpoch != e {
		b.end(false)
	}
	if b.bar == nil {
		// The epoch began after the last poll: its rows so far took at most since.
		b.bar, b.barEpoch, b.barRows = newEpochBar(b.p, e, st.Epochs, st.Rows), e, st.Rows
	}
	b.bar.EwmaSetCurrent(min(st.Trainer.Rows, st.Rows), since)
}

func (b *barReporter) epoch(st *messages.JobStatus, r messages.EpochResult) {
	if b.bar != nil && b.barEpoch <= r.Epoch {
		b.end(false)
	}
	fmt.Fprintln(b.p, epochLine(st, r))
}

func (b *barReporter) line(s string) { fmt.Fprintln(b.p, s) }

// stop removes a bar left unfinished (a failed or interrupted job) and waits until the
// terminal shows everything written.
func (b *barReporter) stop() {
	b.end(true)
	b.p.Wait()
}

// end removes the bar: completed, or aborted when its epoch did not finish.
func (b *barReporter) end(abort bool) {
	if b.bar == nil {
		return
	}
	if abort {
		b.bar.Abort(true)
	} else {
		b.bar.SetCurrent(b.barRows) // complete: the bar goes
	}
	b.bar.Wait()
	b.bar = nil
}

// newEpochBar is one epoch's bar: rows of the epoch (training and validation), rows/s, and
// the time left.
func newEpochBar(p *mpb.Progress, epoch, epochs int, rows int64) *mpb.Bar {
	return newRowsBar(p, fmt.Sprintf("Epoch %d/%d", epoch+1, epochs), rows)
}

// newRowsBar is a bar of rows named name: rows done, rows/s, and the time left.
func newRowsBar(p *mpb.Progress, name string, rows int64) *mpb.Bar {
	return p.New(rows, mpb.BarStyle(), mpb.BarRemoveOnComplete(),
		mpb.PrependDecorators(
			decor.Name(name, decor.WCSyncSpaceR),
			decor.Percentage(decor.WCSyncSpace),
		),
		mpb.AppendDecorators(
			decor.CountersNoUnit("%d/%d rows", decor.WCSyncSpace),
			decor.EwmaSpeed(0, "%.0f rows/s", ewmaAge, decor.WCSyncSpace),
			decor.Name(" ETA "),
			decor.EwmaETA(decor.ET_STYLE_GO, ewmaAge),
		),
	)
}

// ewmaAge is the age of the moving averages of rows/s and the ETA, in polls. 30 is the
// simple average of the ewma package, which needs no warm-up (any other age shows 0 for
// the first ten polls).
const ewmaAge = 30

// epochLine is one finished epoch the way Keras prints it: every metric, the validation
// ones as val_*, then the rows and the speed.
func epochLine(st *messages.JobStatus, r messages.EpochResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Epoch %d/%d - %d rows - %.1fs - %.0f rows/s - loss: %s", r.Epoch+1, st.Epochs, r.Seen.Rows, r.Seconds, r.RowsPerSecond, metricValue(r.Loss))
	for _, name := range sortedKeys(r.Metrics) {
		fmt.Fprintf(&b, " - %s: %s", name, metricValue(r.Metrics[name]))
	}
	if r.ValLoss != nil {
		fmt.Fprintf(&b, " - val_loss: %s", metricValue(*r.ValLoss))
	}
	for _, name := range sortedKeys(r.ValMetrics) {
		fmt.Fprintf(&b, " - val_%s: %s", name, metricValue(r.ValMetrics[name]))
	}
	if r.LearningRate > 0 {
		fmt.Fprintf(&b, " - learning_rate: %s", metricValue(r.LearningRate))
	}
	if r.Best {
		b.WriteString(" (best)")
	}
	return b.String()
}

// metricValue prints as Keras does: four decimals, or four significant digits when that
// would show a small value as zero.
func metricValue(v float64) string {
	if v != 0 && math.Abs(v) < 1e-3 {
		return fmt.Sprintf("%.4e", v)
	}
	return fmt.Sprintf("%.4f", v)
}

// finalLine closes a finished job: where its model is and its best validation metric.
func finalLine(st *messages.JobStatus, model string) string {
	line := fmt.Sprintf("job %s done; model saved to %s", st.ID, model)
	if st.StopReason != "" {
		line += "; " + st.StopReason
	}
	if st.BestModelID != "" && st.BestEpoch != nil {
		line += fmt.Sprintf("; epoch %d's model (model_checkpoint) stored as %s, in %s beside the last", *st.BestEpoch+1, st.BestModelID, st.BestModelPath)
	}
	if st.Sweep != nil {
		return line + "; " + sweepLine(st.Sweep)
	}
	name, v, epoch, ok := bestValidation(st.Results)
	if !ok {
		return line + "; no validation split"
	}
	return line + fmt.Sprintf("; best %s %s (epoch %d)", name, metricValue(v), epoch+1)
}

// modelTrainer is the trainer whose out dir holds the job's model: a sweep's best variant's.
func modelTrainer(st *messages.JobStatus) string {
	if sw := st.Sweep; sw != nil && sw.Best != nil && *sw.Best < len(sw.Variants) {
		return sw.Variants[*sw.Best].Trainer.ID
	}
	return st.Trainer.ID
}

// sweepLine names a sweep's best variant, its monitored value and its stored model.
func sweepLine(sw *messages.SweepStatus) string {
	if sw.Best == nil {
		return fmt.Sprintf("%d variants, none with a %s to judge by", len(sw.Variants), sw.Monitor)
	}
	v := sw.Variants[*sw.Best]
	return fmt.Sprintf("best of %d variants by %s (%s): variant %d, %s %s, stored as %s", len(sw.Variants), sw.Monitor, sw.Mode,
		v.Index, sw.Monitor, metricValue(*v.Value), v.ModelID)
}

// variantLine is one sweep variant in a job's status: its overrides, state, position and
// value.
func variantLine(epochs int, v messages.VariantStatus) string {
	o, _ := json.Marshal(v.Overrides)
	line := fmt.Sprintf("variant %d %s: %s", v.Index, o, v.State)
	switch {
	case v.State == "done":
	case v.Trainer.ID == "":
		line += ", waiting for a trainer"
	default:
		line += fmt.Sprintf(", trainer %s at epoch %d/%d, %d ranges consumed", v.Trainer.ID, min(v.Trainer.Epoch+1, epochs), epochs, v.Trainer.Consumed)
	}
	if v.Value != nil {
		line += ", last epoch " + metricValue(*v.Value)
	}
	if v.Best {
		line += " (best)"
	}
	if v.ModelID != "" {
		line += fmt.Sprintf("; model %s (%s)", v.ModelID, v.ModelPath)
	}
	return line
}

// predictionFinalLine closes a finished prediction job: the output table, the rows
// written, and the model's loss and metrics on them when the job evaluated it.
func predictionFinalLine(st *messages.JobStatus) string {
	p := st.Prediction
	line := fmt.Sprintf("job %s done; %d rows written to %s", st.ID, p.Written.Rows, p.Output)
	if p.Output == "" {
		line = fmt.Sprintf("job %s done; %d rows evaluated", st.ID, p.Written.Rows)
	}
	if p.Loss == nil {
		return line + "; not evaluated"
	}
	line += "; evaluation loss: " + metricValue(*p.Loss)
	for _, name := range sortedKeys(p.Metrics) {
		line += fmt.Sprintf(" - %s: %s", name, metricValue(p.Metrics[name]))
	}
	return line
}

// bestValidation is the best validation accuracy over the epochs (the highest), or without
// an accuracy metric the best validation loss (the lowest).
func bestValidation(results []messages.EpochResult) (name string, best float64, epoch int, ok bool) {
	for _, r := range results {
		for _, k := range sortedKeys(r.ValMetrics) {
			if !strings.HasSuffix(k, "accuracy") {
				continue
			}
			if v := r.ValMetrics[k]; !ok || v > best {
				name, best, epoch, ok = "val_"+k, v, r.Epoch, true
			}
			break
		}
	}
	if ok {
		return name, best, epoch, ok
	}
	for _, r := range results {
		if r.ValLoss != nil && (!ok || *r.ValLoss < best) {
			name, best, epoch, ok = "val_loss", *r.ValLoss, r.Epoch, true
		}
	}
	return name, best, epoch, ok
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
	if sw := st.Sweep; sw != nil {
		fmt.Fprintf(w, "sweep: %d variants judged by %s (%s)\n", len(sw.Variants), sw.Monitor, sw.Mode)
		for _, v := range sw.Variants {
			fmt.Fprintln(w, variantLine(st.Epochs, v))
			for _, r := range v.Results {
				fmt.Fprintln(w, "  "+epochLine(st, r))
			}
		}
	}
	if st.ModelPath != "" {
		fmt.Fprintf(w, "model: %s, under the --out-dir of trainer %s\n", st.ModelPath, modelTrainer(st))
	}
}

// predictionLine sums up a prediction job: where its rows went and, when the table held
// the label, the model's loss and metrics on them.
func predictionLine(st *messages.JobStatus) string {
	p := st.Prediction
	line := fmt.Sprintf("prediction: model %s, %s into %s (%s): %d rows written, %d/%d ranges",
		p.Model, p.Task, p.Output, p.Mode, p.Written.Rows, p.RangesScored, st.Ranges)
	if p.Output == "" {
		line = fmt.Sprintf("evaluation: model %s, %s: %d rows scored, %d/%d ranges", p.Model, p.Task, p.Written.Rows, p.RangesScored, st.Ranges)
	}
	if p.Loss != nil {
		line += fmt.Sprintf("; evaluation loss=%.6f", *p.Loss)
		for _, name := range sortedKeys(p.Metrics) {
			line += fmt.Sprintf("  %s=%.4f", name, p.Metrics[name])
		}
	}
	return line
}
