package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"pgtrain/internal/faultpoint"
	"pgtrain/internal/health"
	"pgtrain/internal/metrics"
)

// healthFlags is a worker's probe listener (see internal/health).
type healthFlags struct{ addr string }

func (h *healthFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&h.addr, "health-listen", "", "serve /healthz, /readyz, /statsz and /metrics (Prometheus, no token: keep this address on the cluster's network) on this address (empty: no probe listener)")
}

// serveHealth starts the probe listener when --health-listen is set. Ready means connected
// to NATS and, for a role with sources, every PostgreSQL source answers a ping. /metrics
// shows the role's collector, its pools, and the Go runtime and process.
func (r *role) serveHealth(h healthFlags, stats func() any, collector prometheus.Collector) (stop func(), err error) {
	if h.addr == "" {
		return func() {}, nil
	}
	ready := func(ctx context.Context) error {
		if r.bus == nil || r.bus.NC == nil || !r.bus.NC.IsConnected() {
			return errors.New("nats: not connected")
		}
		for name, p := range r.pools {
			if err := p.Ping(ctx); err != nil {
				return fmt.Errorf("source %q: %w", name, err)
			}
		}
		return nil
	}
	reg := metrics.NewRegistry()
	reg.MustRegister(collector)
	if len(r.pools) > 0 {
		reg.MustRegister(metrics.NewPoolCollector(r.name, r.pools))
	}
	s, err := health.Start(h.addr, ready, stats, r.log, health.WithMetrics(metrics.Handler(reg)))
	if err != nil {
		return nil, err
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	}, nil
}

// armFaults arms the fault-injection points named in PGTRAIN_FAULT (a testing hook: see
// internal/faultpoint) and says so loudly, since an armed process kills itself.
func armFaults(log *slog.Logger) error {
	desc, err := faultpoint.Arm(os.Getenv(faultpoint.EnvVar))
	if err != nil {
		return err
	}
	if desc != "" {
		log.Warn("fault injection armed: this process will SIGKILL itself at these points", "points", desc, "env", faultpoint.EnvVar)
	}
	return nil
}
