package main

import (
	"bytes"
	"context"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/internal/bus"
	"pgtrain/internal/demo"
	"pgtrain/internal/local"
	"pgtrain/internal/testenv"
	"pgtrain/messages"
	"pgtrain/trainer"
)

func ptr(v float64) *float64 { return &v }

func TestEpochLine(t *testing.T) {
	st := &messages.JobStatus{Epochs: 3}
	tests := []struct {
		name string
		r    messages.EpochResult
		want string
	}{
		{
			name: "every metric, validation ones as val_*",
			r: messages.EpochResult{Epoch: 1, Loss: 0.51234, Metrics: map[string]float64{"mae": 0.6, "accuracy": 0.8},
				ValLoss: ptr(0.7), ValMetrics: map[string]float64{"mae": 0.65, "accuracy": 0.75},
				Seen: messages.KeyChecksum{Rows: 4800}, Seconds: 1.25, RowsPerSecond: 3840},
			want: "Epoch 2/3 - 4800 rows - 1.2s - 3840 rows/s - loss: 0.5123 - accuracy: 0.8000 - mae: 0.6000 - val_loss: 0.7000 - val_accuracy: 0.7500 - val_mae: 0.6500",
		},
		{
			name: "no validation split",
			r:    messages.EpochResult{Epoch: 0, Loss: 2, Seen: messages.KeyChecksum{Rows: 10}, Seconds: 0.5, RowsPerSecond: 20},
			want: "Epoch 1/3 - 10 rows - 0.5s - 20 rows/s - loss: 2.0000",
		},
		{
			name: "a small loss keeps its digits",
			r:    messages.EpochResult{Epoch: 2, Loss: 0.000012345, ValLoss: ptr(0)},
			want: "Epoch 3/3 - 0 rows - 0.0s - 0 rows/s - loss: 1.2345e-05 - val_loss: 0.0000",
		},
		{
			name: "the learning rate of a schedule, and the best epoch marked",
			r: messages.EpochResult{Epoch: 0, Loss: 1, ValLoss: ptr(0.5), ValMetrics: map[string]float64{"accuracy": 0.9},
				LearningRate: 0.0005, Best: true},
			want: "Epoch 1/3 - 0 rows - 0.0s - 0 rows/s - loss: 1.0000 - val_loss: 0.5000 - val_accuracy: 0.9000 - learning_rate: 5.0000e-04 (best)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := epochLine(st, tt.r); got != tt.want {
				t.Errorf("epochLine =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestFinalLine(t *testing.T) {
	tests := []struct {
		name       string
		results    []messages.EpochResult
		stopReason string
		bestEpoch  int
		want       string
	}{
		{
			name: "the highest validation accuracy",
			results: []messages.EpochResult{
				{Epoch: 0, ValLoss: ptr(0.5), ValMetrics: map[string]float64{"accuracy": 0.7, "mae": 0.1}},
				{Epoch: 1, ValLoss: ptr(0.4), ValMetrics: map[string]float64{"accuracy": 0.9, "mae": 0.2}},
				{Epoch: 2, ValLoss: ptr(0.3), ValMetrics: map[string]float64{"accuracy": 0.8, "mae": 0.3}},
			},
			want: "job j done; model saved to out/j/model; best val_accuracy 0.9000 (epoch 2)",
		},
		{
			name: "without accuracy the lowest validation loss",
			results: []messages.EpochResult{
				{Epoch: 0, ValLoss: ptr(0.5), ValMetrics: map[string]float64{"mae": 0.1}},
				{Epoch: 1, ValLoss: ptr(0.25), ValMetrics: map[string]float64{"mae": 0.2}},
				{Epoch: 2, ValLoss: ptr(0.3), ValMetrics: map[string]float64{"mae": 0.3}},
			},
			want: "job j done; model saved to out/j/model; best val_loss 0.2500 (epoch 2)",
		},
		{
			name:    "no validation split",
			results: []messages.EpochResult{{Epoch: 0, Loss: 1}},
			want:    "job j done; model saved to out/j/model; no validation split",
		},
		{
			name:       "stopped early, with the best epoch's model",
			results:    []messages.EpochResult{{Epoch: 0, ValLoss: ptr(0.5)}, {Epoch: 1, ValLoss: ptr(0.6)}},
			stopReason: "early stopping at epoch 2 of 9: val_loss did not improve for 1 epochs (best 0.5 at epoch 1)",
			bestEpoch:  0,
			want: "job j done; model saved to out/j/model; early stopping at epoch 2 of 9: val_loss did not improve for 1 epochs (best 0.5 at epoch 1)" +
				"; epoch 1's model (model_checkpoint) stored as j_best, in j/model-best beside the last; best val_loss 0.5000 (epoch 1)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &messages.JobStatus{ID: "j", Results: tt.results, StopReason: tt.stopReason}
			if tt.stopReason != "" {
				st.BestEpoch, st.BestModelID, st.BestModelPath = &tt.bestEpoch, messages.BestModelID("j"), messages.BestModelDir("j")
			}
			if got := finalLine(st, "out/j/model"); got != tt.want {
				t.Errorf("finalLine =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

// followCluster runs every role in this process on a real PostgreSQL and JetStream, with
// the demo table, and a trainer slowed enough that an epoch spans several polls.
func followCluster(t *testing.T) (*local.Cluster, *pgxpool.Pool) {
	t.Helper()
	pool, _ := testenv.Pool(t)
	if err := demo.CreateTable(context.Background(), pool, 6000); err != nil {
		t.Fatal(err)
	}
	c, err := local.Start(context.Background(), local.Options{
		Sources: map[string]*pgxpool.Pool{"": pool}, NATSURL: testenv.NATS(t),
		Fetchers: 2, Preprocessors: 1, Trainer: true, Scorers: 1,
		TrainerCfg: trainer.Config{OutDir: t.TempDir(), StepDelay: 20 * time.Millisecond},
		Limits:     bus.Limits{ReadyMaxBytes: 64 << 20},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c, pool
}

// followJob submits the demo job and follows it to w until it ends.
func followJob(t *testing.T, c *local.Cluster, w io.Writer, epochs int) *messages.JobStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	st, err := c.Client.Submit(ctx, demo.Spec(epochs))
	if err != nil {
		t.Fatal(err)
	}
	final, err := follow(ctx, c.Client, st.ID, w, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if final.State != messages.JobDone {
		t.Fatalf("job %s %s: %s", final.ID, final.State, final.Error)
	}
	return final
}

var epochLineRE = regexp.MustCompile(`(?m)^Epoch (\d)/3 - \d+ rows - .* - loss: \S+ - mae: \S+ - val_loss: \S+ - val_mae: \S+$`)

func TestFollow(t *testing.T) {
	c, _ := followCluster(t)

	// Not a terminal: plain lines only, every epoch with its validation metrics.
	t.Run("plain", func(t *testing.T) {
		var out bytes.Buffer
		final := followJob(t, c, &out, 3)
		text := out.String()
		if strings.ContainsAny(text, "\r\x1b") {
			t.Errorf("plain output has cursor control characters:\n%q", text)
		}
		if got := epochLineRE.FindAllStringSubmatch(text, -1); len(got) != 3 || got[0][1] != "1" || got[2][1] != "3" {
			t.Errorf("want three epoch lines with val_* metrics, got %q in:\n%s", got, text)
		}
		if !strings.Contains(text, "  [") || !strings.Contains(text, "ranges (") {
			t.Errorf("no progress line in:\n%s", text)
		}
		if line := finalLine(final, "m"); !strings.Contains(line, "best val_loss ") {
			t.Errorf("final line %q names no validation metric", line)
		}
	})

	// A terminal (a pseudo-terminal): a bar per epoch with rows, rows/s and the ETA, redrawn
	// in place, and the same epoch lines once each epoch ends.
	t.Run("terminal", func(t *testing.T) {
		ptmx, tty, err := pty.Open()
		if err != nil {
			t.Fatal(err)
		}
		defer ptmx.Close()
		if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 24, Cols: 120}); err != nil {
			t.Fatal(err)
		}
		if !isTerminal(tty) {
			t.Fatal("the pty is not seen as a terminal")
		}
		var out bytes.Buffer
		read := make(chan struct{})
		go func() { defer close(read); _, _ = io.Copy(&out, ptmx) }()
		followJob(t, c, tty, 3)
		tty.Close()
		<-read // the master reads to EOF (EIO) once the terminal side is closed
		raw := strings.ReplaceAll(out.String(), "\r\n", "\n")
		bar := regexp.MustCompile(`Epoch 1/3 +\d+ % \[[=>-]+\] +\d+/6000 rows +[1-9]\d* rows/s ETA \S+`)
		if !bar.MatchString(raw) {
			t.Errorf("no bar with rows, rows/s and ETA for epoch 1 in:\n%q", raw)
		}
		if !strings.Contains(raw, "\x1b[1A") {
			t.Errorf("the bar is not redrawn in place:\n%q", raw)
		}
		// What stays on the screen: the epoch lines, every bar gone.
		screen := terminalScreen(raw)
		if got := epochLineRE.FindAllString(strings.Join(screen, "\n"), -1); len(got) != 3 || len(screen) != 3 {
			t.Errorf("want the three epoch lines with val_* metrics on the screen, got:\n%s", strings.Join(screen, "\n"))
		}
	})
}

// terminalScreen is the lines a terminal shows after raw output that moves the cursor up a
// line (ESC[1A) and clears below it (ESC[J), as the bars do.
func terminalScreen(raw string) []string {
	var lines []string
	for _, seg := range strings.SplitAfter(raw, "\n") {
		for strings.HasPrefix(seg, "\x1b[1A") {
			seg = seg[len("\x1b[1A"):]
			if len(lines) > 0 {
				lines = lines[:len(lines)-1]
			}
		}
		seg = strings.TrimPrefix(seg, "\x1b[J")
		if seg != "" {
			lines = append(lines, strings.TrimSuffix(seg, "\n"))
		}
	}
	return lines
}

func TestPredictionFinalLine(t *testing.T) {
	tests := []struct {
		name string
		p    messages.PredictionStatus
		want string
	}{
		{
			name: "evaluated: the loss, then every metric",
			p: messages.PredictionStatus{Output: "public.scored", Written: messages.KeyChecksum{Rows: 6000},
				Loss: ptr(0.25), Metrics: map[string]float64{"mae": 0.4, "accuracy": 0.9}},
			want: "job j done; 6000 rows written to public.scored; evaluation loss: 0.2500 - accuracy: 0.9000 - mae: 0.4000",
		},
		{
			name: "no label: not evaluated",
			p:    messages.PredictionStatus{Output: "s.out", Written: messages.KeyChecksum{Rows: 12}},
			want: "job j done; 12 rows written to s.out; not evaluated",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := predictionFinalLine(&messages.JobStatus{ID: "j", Prediction: &tt.p}); got != tt.want {
				t.Errorf("predictionFinalLine =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

// followPrediction submits a prediction of the demo table with model into out and follows
// it to w until it ends.
func followPrediction(t *testing.T, c *local.Cluster, model, out string, w io.Writer) *messages.JobStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	st, err := c.Client.SubmitPrediction(ctx, []byte(`{"model": "`+model+`", "table": "`+demo.Table+`", "output": "`+out+`", "range_rows": 1000, "page_rows": 250}`))
	if err != nil {
		t.Fatal(err)
	}
	final, err := follow(ctx, c.Client, st.ID, w, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if final.State != messages.JobDone {
		t.Fatalf("job %s %s: %s", final.ID, final.State, final.Error)
	}
	return final
}

// A prediction job followed as submit --wait follows a training job: plain lines of the
// rows written to a pipe, one bar of the job's rows on a terminal, and a final line with
// the output table, the rows and the evaluation.
func TestFollowPrediction(t *testing.T) {
	c, _ := followCluster(t)
	model := followJob(t, c, io.Discard, 1).ID

	t.Run("plain", func(t *testing.T) {
		var out bytes.Buffer
		final := followPrediction(t, c, model, "follow_scored", &out)
		text := out.String()
		if strings.ContainsAny(text, "\r\x1b") || strings.Contains(text, "Epoch") {
			t.Errorf("plain prediction output has cursor controls or epoch lines:\n%q", text)
		}
		if !regexp.MustCompile(`(?m)^  \[\d+s\] written \d+/\d+ ranges \(\d+ rows\); fetched \d+/\d+ ranges, \d+ leased$`).MatchString(text) {
			t.Errorf("no progress line of the rows written in:\n%s", text)
		}
		want := regexp.MustCompile(`^job ` + final.ID + ` done; 6000 rows written to public\.follow_scored; evaluation loss: \S+ - mae: \S+$`)
		if line := predictionFinalLine(final); !want.MatchString(line) {
			t.Errorf("final line %q, want it to match %s", line, want)
		}
	})

	t.Run("terminal", func(t *testing.T) {
		ptmx, tty, err := pty.Open()
		if err != nil {
			t.Fatal(err)
		}
		defer ptmx.Close()
		if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 24, Cols: 120}); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		read := make(chan struct{})
		go func() { defer close(read); _, _ = io.Copy(&out, ptmx) }()
		followPrediction(t, c, model, "follow_scored_tty", tty)
		tty.Close()
		<-read // the master reads to EOF (EIO) once the terminal side is closed
		raw := strings.ReplaceAll(out.String(), "\r\n", "\n")
		if !regexp.MustCompile(`Scoring +\d+ % \[[=>-]+\] +\d+/6000 rows +\d+ rows/s ETA \S+`).MatchString(raw) {
			t.Errorf("no bar of the job's rows in:\n%q", raw)
		}
		if strings.Contains(raw, "Epoch") {
			t.Errorf("a prediction job shows an epoch:\n%q", raw)
		}
		if screen := terminalScreen(raw); len(screen) != 0 {
			t.Errorf("the bar stays on the screen:\n%s", strings.Join(screen, "\n"))
		}
	})
}
