package preprocessor_test

import (
	"context"
	"log/slog"
	"os"
	"os/signal"

	"pgtrain/coordinator/client"
	"pgtrain/internal/bus"
	"pgtrain/preprocessor"
)

// A preprocessor process: connect to NATS, declare the streams, run until interrupted.
func ExampleNew() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	nc, err := bus.Connect("nats://127.0.0.1:4222", "pgtrain-preprocessor", log)
	if err != nil {
		log.Error("nats", "error", err)
		return
	}
	defer nc.Close()
	b, err := bus.Ensure(ctx, nc, bus.Limits{})
	if err != nil {
		log.Error("streams", "error", err)
		return
	}
	p, err := preprocessor.New(preprocessor.Config{Concurrency: 2}, b, client.New("http://127.0.0.1:8080", log), log)
	if err != nil {
		log.Error("config", "error", err)
		return
	}
	if err := p.Run(ctx); err != nil {
		log.Error("preprocessor", "error", err)
	}
}
