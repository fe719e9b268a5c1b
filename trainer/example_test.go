package trainer_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"pgtrain/coordinator/client"
	"pgtrain/internal/bus"
	"pgtrain/trainer"
)

// A trainer process: connect to NATS, declare the streams, and train whatever the
// coordinator hands out until the context is cancelled.
func Example() {
	ctx, cancel := context.WithCancel(context.Background()) // main cancels it on SIGTERM
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	nc, err := bus.Connect("nats://127.0.0.1:4222", "pgtrain-trainer", log)
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
	t, err := trainer.New(trainer.Config{TrainerID: "trainer-1", OutDir: "pgtrain-data/models"},
		b, client.New("http://127.0.0.1:8080", log), log)
	if err != nil {
		log.Error("config", "error", err)
		return
	}
	if err := t.Run(ctx); err != nil {
		log.Error("trainer", "error", err)
	}
}

func ExampleConfig_WithDefaults() {
	cfg := trainer.Config{TrainerID: "trainer-1"}.WithDefaults()
	fmt.Println(cfg.OutDir, cfg.Poll, cfg.Prefetch, cfg.ReadBackoff, cfg.Validate())
	// Output: pgtrain-data/models 200ms 2 50ms <nil>
}
