package trainer

import (
	"context"
	"encoding/json"
	"fmt"
	"syscall"
	"testing"
	"time"

	"pgtrain/messages"
)

func benchPlan(job string, ranges, rows, dim, pageRows int) (*messages.Plan, []*messages.ReadyBatch) {
	p := &messages.Plan{Version: messages.SchemaVersion, JobID: job, InputDim: dim, LabelDim: 1, PageRows: pageRows, Replay: true,
		Spec: messages.JobSpec{Epochs: 1, BatchSize: 256, Seed: 1, Backend: "go", Loss: "mse",
			Model:     json.RawMessage(`{"layers": [{"type": "dense", "units": 1}]}`),
			Optimizer: messages.OptimizerSpec{Name: "sgd", LearningRate: 0.001}},
		Schema: "public", Table: "t", Key: "id", Label: messages.ColumnPlan{Name: "y", PGType: "real", Kind: messages.KindNumeric, Factor: 1}}
	for j := range dim {
		p.Features = append(p.Features, messages.ColumnPlan{Name: fmt.Sprintf("x%d", j), PGType: "real", Kind: messages.KindNumeric, Factor: 1})
	}
	var out []*messages.ReadyBatch
	key := int64(0)
	for r := 0; r < ranges; r++ {
		lo := key
		for page := 0; page*pageRows < rows; page++ {
			n := min(pageRows, rows-page*pageRows)
			rb := &messages.ReadyBatch{BatchID: messages.BatchID{JobID: job, Range: r, Page: page},
				InputDim: dim, LabelDim: 1, Last: (page+1)*pageRows >= rows,
				X: make([]float32, n*dim), Y: make([]float32, n)}
			for i := 0; i < n; i++ {
				rb.Keys = append(rb.Keys, key)
				p.Expected.Add(key)
				for j := 0; j < dim; j++ {
					rb.X[i*dim+j] = float32((key*int64(j+1))%97) / 97
				}
				rb.Y[i] = rb.X[i*dim] - rb.X[i*dim+1]
				key++
			}
			out = append(out, rb)
		}
		p.Ranges = append(p.Ranges, messages.KeyRange{Index: r, Lo: lo, Hi: key - 1, Rows: int64(rows)})
	}
	return p, out
}

// BenchmarkReadRange measures reading one range of 50,000 rows × 16 features (pages of
// 4,096 rows, ~280 KiB each) from READY by subject with direct gets, one page at a time and
// with the default read-ahead. cpu-ns/row is the process's CPU time (the embedded NATS
// server's included) per row.
func BenchmarkReadRange(b *testing.B) {
	const rows, dim, pageRows = 50_000, 16, 4096
	bus := testBus(b)
	p, batches := benchPlan("bench-read", 1, rows, dim, pageRows)
	ctx := context.Background()
	var bytes int64
	for _, rb := range batches {
		data, _ := messages.EncodeReady(rb)
		bytes += int64(len(data))
		if err := publish(ctx, bus, rb); err != nil {
			b.Fatal(err)
		}
	}
	for _, ahead := range []int{1, DefaultReadAhead} {
		b.Run(fmt.Sprintf("ahead=%d", ahead), func(b *testing.B) {
			rr := newReadyReader(bus.Ready, bus.Names(), p, ahead, 5*time.Millisecond, testLog(b))
			var reuse *rangeRows
			b.SetBytes(bytes)
			cpu := processCPU()
			b.ResetTimer()
			for b.Loop() {
				pages := rr.stream(ctx, oneRange(0, 0))
				r, err := rr.Read(ctx, pages, 0, 0, reuse)
				pages.stop()
				if err != nil || r.rows() != rows {
					b.Fatalf("read %v rows: %v", r, err)
				}
				reuse = r
			}
			b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
			b.ReportMetric(float64(processCPU()-cpu)/float64(rows*b.N), "cpu-ns/row")
		})
	}
}

// processCPU is the user and system time the process has used, in nanoseconds.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkEpoch measures a whole trainer job (read, shuffle, batch, checkpoint, report)
// over 4 ranges of 50,000 rows × 16 features with a one-unit linear model, so that the
// figure is the pipeline's overhead rather than a network's compute: one epoch, and three
// epochs of a replayed plan (the last two read READY again), one page at a time and with the
// default read-ahead. cpu-ns/row is the process's CPU time (the embedded NATS server's
// included) per row trained.
func BenchmarkEpoch(b *testing.B) {
	const ranges, rows, dim, pageRows = 4, 50_000, 16, 4096
	bus := testBus(b)
	ctx := context.Background()
	for _, epochs := range []int{1, 3} {
		for _, ahead := range []int{1, DefaultReadAhead} {
			b.Run(fmt.Sprintf("epochs=%d/ahead=%d", epochs, ahead), func(b *testing.B) {
				var cpu int64
				for i := 0; b.Loop(); i++ {
					b.StopTimer()
					job := fmt.Sprintf("bench-epoch-%d-%d-%d", epochs, ahead, i)
					p, batches := benchPlan(job, ranges, rows, dim, pageRows)
					p.Spec.Epochs = epochs
					storePlan(b, bus, p)
					for _, rb := range batches {
						if err := publish(ctx, bus, rb); err != nil {
							b.Fatal(err)
						}
					}
					tr, err := New(Config{TrainerID: job, OutDir: b.TempDir(), Once: true, ReadAhead: ahead}, bus, newTestCoordinator(job), testLog(b))
					if err != nil {
						b.Fatal(err)
					}
					began := processCPU()
					b.StartTimer()
					if err := tr.Run(ctx); err != nil {
						b.Fatal(err)
					}
					cpu += processCPU() - began
				}
				trained := float64(epochs*ranges*rows) * float64(b.N)
				b.ReportMetric(trained/b.Elapsed().Seconds(), "rows/s")
				b.ReportMetric(float64(cpu)/trained, "cpu-ns/row")
			})
		}
	}
}
