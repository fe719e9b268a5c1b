package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Check reports whether one dependency answers; nil means it does.
type Check func(ctx context.Context) error

// checkTimeout bounds a readiness probe: a dependency that does not answer in time is down.
const checkTimeout = 3 * time.Second

// The probes are small GETs: a client that sends or reads slower than this, or keeps a
// connection idle longer, is cut off.
const (
	readTimeout  = 5 * time.Second
	writeTimeout = checkTimeout + 5*time.Second
	idleTimeout  = time.Minute
)

// Server is a running probe listener.
type Server struct {
	srv  *http.Server
	addr string
	done chan struct{}
}

// Option adds to what the listener serves.
type Option func(*http.ServeMux)

// WithMetrics serves h (a Prometheus handler, see internal/metrics) at GET /metrics. Like the
// probes it needs no token: the listener is opt-in (--health-listen) and meant for the
// cluster's network, and it shows counters, never a row of data.
func WithMetrics(h http.Handler) Option {
	return func(mux *http.ServeMux) { mux.Handle("GET /metrics", h) }
}

// Start listens on addr ("127.0.0.1:0" picks a free port) and serves the probes. ready is
// run on every /readyz; stats (may be nil) is encoded as JSON on every /statsz.
func Start(addr string, ready Check, stats func() any, log *slog.Logger, opts ...Option) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("health endpoint: listening on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), checkTimeout)
		defer cancel()
		if ready != nil {
			if err := ready(ctx); err != nil {
				writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "error": err.Error()})
				return
			}
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	mux.HandleFunc("GET /statsz", func(w http.ResponseWriter, _ *http.Request) {
		var v any = struct{}{}
		if stats != nil {
			v = stats()
		}
		writeJSON(w, http.StatusOK, v)
	})
	for _, o := range opts {
		o(mux)
	}
	s := &Server{
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: readTimeout, ReadTimeout: readTimeout,
			WriteTimeout: writeTimeout, IdleTimeout: idleTimeout},
		addr: ln.Addr().String(),
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("health endpoint stopped", "error", err)
		}
	}()
	log.Info("health endpoint listening", "addr", s.addr)
	return s, nil
}

// Addr is the address the probes are served on.
func (s *Server) Addr() string { return s.addr }

// Close stops the listener, letting probes in flight finish within ctx.
func (s *Server) Close(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the prober may be gone
}
