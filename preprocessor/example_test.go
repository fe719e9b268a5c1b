package preprocessor_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"pgtrain/coordinator/client"
	"pgtrain/internal/bus"
	"pgtrain/internal/devenv"
	"pgtrain/messages"
	"pgtrain/preprocessor"
)

// A preprocessor process: connect to NATS, declare the streams, and turn RAW pages into READY
// batches until the context ends. Here one page of a job whose plan is in the bus goes through.
func ExampleNew() {
	natsSrv, err := devenv.StartNATS(devenv.NATSOptions{}) // an embedded JetStream server
	if err != nil {
		fmt.Println(err)
		return
	}
	defer natsSrv.Stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithCancel(context.Background()) // main cancels it on SIGTERM
	defer cancel()
	nc, err := bus.Connect(natsSrv.URL, "pgtrain-preprocessor", log)
	if err != nil {
		fmt.Println("nats:", err)
		return
	}
	defer nc.Close()
	b, err := bus.Ensure(ctx, nc, bus.Limits{})
	if err != nil {
		fmt.Println("streams:", err)
		return
	}
	// What the coordinator's plan and a fetcher's page would be: x scaled by (x-10)/5, a label.
	plan := &messages.Plan{
		JobID:    "job-1",
		Features: []messages.ColumnPlan{{Name: "x", Kind: messages.KindNumeric, Offset: 10, Factor: 0.2}},
		InputDim: 1,
		Label:    messages.ColumnPlan{Name: "y", Kind: messages.KindNumeric},
		LabelDim: 1,
	}
	page := &messages.RawBatch{
		BatchID: messages.BatchID{JobID: "job-1"},
		Last:    true,
		Keys:    []int64{1, 2},
		Columns: []messages.RawColumn{
			{Name: "x", Kind: messages.ColumnFloat64, Float64: []float64{10, 20}},
			{Name: "y", Kind: messages.ColumnFloat64, Float64: []float64{0, 1}},
		},
	}
	if err := bus.PutPlan(ctx, b.State, plan); err != nil {
		fmt.Println(err)
		return
	}
	data, err := messages.EncodeRaw(page)
	if err != nil {
		fmt.Println(err)
		return
	}
	if _, err := b.JS.Publish(ctx, b.Names().RawSubject(page.BatchID), data, jetstream.WithMsgID(page.MsgID())); err != nil {
		fmt.Println(err)
		return
	}

	// The coordinator is where a job that cannot be preprocessed is failed; none is here.
	p, err := preprocessor.New(preprocessor.Config{Concurrency: 2}, b, client.New("http://127.0.0.1:8080", log), log)
	if err != nil {
		fmt.Println("config:", err)
		return
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	cons, err := b.Ready.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		fmt.Println(err)
		return
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(time.Minute))
	if err != nil {
		fmt.Println(err)
		return
	}
	ready, err := messages.DecodeReady(msg.Data())
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(msg.Subject(), ready.Keys, ready.X, ready.Y)
	cancel()
	fmt.Println("stopped:", <-done)
	// Output:
	// pgtrain.ready.job-1.0.0.0 [1 2] [0 2] [0 1]
	// stopped: <nil>
}
