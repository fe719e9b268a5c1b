package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/coordinator/dashboard"
	"pgtrain/internal/bus"
	"pgtrain/messages"
)

// apiError is an error with its HTTP status; field names the spec field at fault.
type apiError struct {
	status int
	msg    string
	field  string
	// retryAfter, when set, is sent as Retry-After (a 429 or 503 the client may retry).
	retryAfter time.Duration
	// jobState is the job's state when it is why the request is refused.
	jobState string
}

func (e *apiError) Error() string { return e.msg }

// unavailable marks a state-store failure as 503: clients retry it.
func unavailable(err error) error {
	return &apiError{status: http.StatusServiceUnavailable, msg: err.Error()}
}

// Body limits: a spec may carry a large Keras model document; everything else is small.
const (
	maxSpecBytes  = 16 << 20
	maxSmallBytes = 1 << 20
)

// api lists every route with who may call it; routes registers them. A route without an
// access panics at registration, so a new route cannot be left open by mistake.
func (c *Coordinator) api() []route {
	return []route{
		{"POST /v1/jobs", needs(ScopeSubmit), c.handleSubmit},
		{"GET /v1/jobs", needs(ScopeRead), c.handleJobs},
		{"GET /v1/jobs/{id}", needs(ScopeRead), c.handleJob},
		{"GET /v1/jobs/{id}/plan", needs(ScopeRead), c.handlePlan},
		{"POST /v1/jobs/{id}/cancel", needs(ScopeSubmit), c.handleCancel},
		{"DELETE /v1/jobs/{id}", needs(ScopeSubmit), c.handleDelete},
		{"POST /v1/jobs/{id}/fail", needs(ScopeWorker), c.handleFail},
		{"POST /v1/jobs/{id}/progress", needs(ScopeWorker), c.handleProgress},
		{"POST /v1/leases", needs(ScopeWorker), c.handleLease},
		{"POST /v1/leases/{lease_id}", needs(ScopeWorker), c.handleLeaseReport},
		{"POST /v1/trainers/claim", needs(ScopeWorker), c.handleClaim},
		{"POST /v1/predictions", needs(ScopeSubmit), c.handlePredict},
		{"GET /v1/scorers/jobs", needs(ScopeWorker), c.handleScorerJobs},
		{"POST /v1/jobs/{id}/scored", needs(ScopeWorker), c.handleScored},
		{"GET /v1/models", needs(ScopeRead), c.handleModels},
		{"GET /v1/models/{id}", needs(ScopeRead), c.handleModel},
		// The files carry the data's values: the handler also wants the data scope.
		{"GET /v1/models/{id}/files/{name}", needs(ScopeRead), c.handleModelFile},
		// POST /v1/models/{id}:predict (TF Serving's path; the handler checks the verb).
		{"POST /v1/models/{id}", needs(ScopePredict, ScopeSubmit), c.handleModelPost},
		// The bus state (page counts, no data) is what `pgtrain status` shows users too.
		{"GET /v1/bus", needs(ScopeWorker, ScopeRead), c.handleBus},
		{"GET /v1/openapi.json", needs(ScopeRead), c.handleOpenAPI},
		// Probes stay open: orchestrators call them without credentials.
		{"GET /healthz", public, func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		}},
		{"GET /readyz", public, c.handleReady},
		// Where each key range stands (counts and fetcher ids, no key or value): the dashboard's strip.
		{"GET /v1/jobs/{id}/ranges", needs(ScopeRead), c.handleRanges},
		// The dashboard's files hold no data: the page calls the API with the user's token.
		{"GET " + dashboard.Path, public, dashboard.Handler().ServeHTTP},
		// Metrics show job ids, tables and losses, which only a read token sees elsewhere.
		{"GET /metrics", needs(ScopeRead), c.handleMetrics},
	}
}

func (c *Coordinator) routes() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range c.api() {
		mux.HandleFunc(rt.pattern, c.authorize(rt.access, rt.pattern, rt.handler))
	}
	// No route: the mux answers 404, or 405 with an Allow header when the path exists
	// under another method; the answer goes out as the API's JSON error. Only a caller with
	// a valid token may learn which routes exist.
	noRoute := c.authorize(needs(Scopes...), "no route", func(w http.ResponseWriter, r *http.Request) {
		nw := &noRouteWriter{ResponseWriter: w}
		mux.ServeHTTP(nw, r)
		switch nw.status {
		case http.StatusMethodNotAllowed:
			c.writeError(w, r, &apiError{status: nw.status, msg: fmt.Sprintf("method %s not allowed on %s; allowed: %s", r.Method, r.URL.Path, w.Header().Get("Allow"))})
		case http.StatusNotFound:
			c.writeError(w, r, &apiError{status: nw.status, msg: fmt.Sprintf("no route %s %s", r.Method, r.URL.Path)})
		}
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		noRoute(w, r)
	})
}

// noRouteWriter holds back the mux's plain-text 404 and 405 answers; any other answer (a
// redirect to the clean path) goes through.
type noRouteWriter struct {
	http.ResponseWriter
	status int
}

func (w *noRouteWriter) WriteHeader(code int) {
	if code == http.StatusNotFound || code == http.StatusMethodNotAllowed {
		w.status = code
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *noRouteWriter) Write(b []byte) (int, error) {
	if w.status != 0 {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

func (c *Coordinator) handleSubmit(w http.ResponseWriter, r *http.Request) {
	// Planning runs before the answer: the server's WriteTimeout would cut a long one off.
	// (Not every ResponseWriter supports deadlines; a test recorder has none to extend.)
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(c.cfg.PlanTimeout + c.cfg.WriteTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxSpecBytes))
	if err != nil {
		c.writeError(w, r, &apiError{status: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("reading the spec: %v", err), field: "spec"})
		return
	}
	st, err := c.submit(r.Context(), body, r.Header.Get("Idempotency-Key"), c.createJob)
	if err != nil {
		c.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, st)
}

func (c *Coordinator) handleJobs(w http.ResponseWriter, r *http.Request) {
	q, err := c.parseListQuery(r.URL.Query())
	if err != nil {
		c.writeError(w, r, err)
		return
	}
	c.mu.Lock()
	out := c.listJobs(q)
	c.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (c *Coordinator) handleJob(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	c.mu.Lock()
	j := c.jobs[id]
	var st messages.JobStatus
	if j != nil {
		st = j.status(c.now())
	}
	c.mu.Unlock()
	if j == nil {
		c.writeError(w, r, &apiError{status: http.StatusNotFound, msg: fmt.Sprintf("no job %q", id)})
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (c *Coordinator) handleCancel(w http.ResponseWriter, r *http.Request) {
	st, err := c.cancelJob(r.Context(), r.PathValue("id"))
	if err != nil {
		c.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (c *Coordinator) handleDelete(w http.ResponseWriter, r *http.Request) {
	if err := c.deleteJob(r.Context(), r.PathValue("id")); err != nil {
		c.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (c *Coordinator) handlePlan(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	c.mu.Lock()
	j := c.jobs[id]
	c.mu.Unlock()
	if j == nil {
		c.writeError(w, r, &apiError{status: http.StatusNotFound, msg: fmt.Sprintf("no job %q", id)})
		return
	}
	if j.plan == nil { // set once at load, never changed
		c.writeError(w, r, &apiError{status: http.StatusNotFound, msg: fmt.Sprintf("job %s has no plan: %v", id, j.loadErr)})
		return
	}
	p := j.plan // the plan never changes once stored
	if !c.mayHold(r, ScopeData) {
		p = withoutData(p)
	}
	writeJSON(w, http.StatusOK, p)
}

// withoutData is a copy of a plan without what shows values of the table: vocabularies
// (a categorical column's most frequent values, names or ids included) and the statistics
// with the imputation and scaling derived from them.
func withoutData(p *messages.Plan) *messages.Plan {
	out := *p
	strip := func(c messages.ColumnPlan) messages.ColumnPlan {
		c.Vocabulary, c.Stats = nil, messages.Stats{}
		c.Impute, c.Offset, c.Factor = 0, 0, 0
		if c.Elements != nil {
			c.Elements = make([]messages.ElementPlan, len(c.Elements)) // the length stays: it is the input width
		}
		return c
	}
	out.Features = make([]messages.ColumnPlan, len(p.Features))
	for i, f := range p.Features {
		out.Features[i] = strip(f)
	}
	out.Label = strip(p.Label)
	out.Omitted = fmt.Sprintf("vocabularies, column statistics, imputation and scaling values: they show the table's data, which needs a token with the %q scope", ScopeData)
	return &out
}

func (c *Coordinator) handleFail(w http.ResponseWriter, r *http.Request) {
	var req messages.FailRequest
	if !c.decode(w, r, &req) {
		return
	}
	st, err := c.failJob(r.Context(), r.PathValue("id"), req)
	if err != nil {
		c.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (c *Coordinator) handleProgress(w http.ResponseWriter, r *http.Request) {
	var p messages.TrainerProgress
	if !c.decode(w, r, &p) {
		return
	}
	if err := c.trainerProgress(r.Context(), r.PathValue("id"), p); err != nil {
		c.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (c *Coordinator) handleLease(w http.ResponseWriter, r *http.Request) {
	var req messages.LeaseRequest
	if !c.decode(w, r, &req) {
		return
	}
	if req.WorkerID == "" {
		c.writeError(w, r, &apiError{status: http.StatusBadRequest, msg: "worker_id is required", field: "worker_id"})
		return
	}
	l, err := c.grantLease(r.Context(), req.WorkerID, r.Header.Get("Idempotency-Key"))
	if err != nil {
		c.writeError(w, r, err)
		return
	}
	if l == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeJSON(w, http.StatusOK, l)
}

func (c *Coordinator) handleLeaseReport(w http.ResponseWriter, r *http.Request) {
	var p messages.LeaseProgress
	if !c.decode(w, r, &p) {
		return
	}
	l, err := c.reportLease(r.Context(), r.PathValue("lease_id"), p)
	if err != nil {
		c.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, l)
}

func (c *Coordinator) handleClaim(w http.ResponseWriter, r *http.Request) {
	var req messages.ClaimRequest
	if !c.decode(w, r, &req) {
		return
	}
	resp, err := c.claimJob(r.Context(), req.TrainerID)
	if err != nil {
		c.writeError(w, r, err)
		return
	}
	if resp.JobID == "" {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// handleReady answers 200 only when NATS (with JetStream) and every source answer.
func (c *Coordinator) handleReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	if err := c.check(ctx); err != nil {
		c.writeError(w, r, &apiError{status: http.StatusServiceUnavailable, msg: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (c *Coordinator) check(ctx context.Context) error {
	if nc := c.bus.JetStream().Conn(); nc != nil && !nc.IsConnected() {
		return errors.New("nats: not connected")
	}
	if _, err := c.bus.StateKV().Status(ctx); err != nil {
		return fmt.Errorf("nats: state bucket: %w", err)
	}
	for name, pool := range c.sources {
		if err := c.pingSource(ctx, name, pool); err != nil {
			return fmt.Errorf("source %q: %w", name, err)
		}
	}
	return nil
}

// pingSource pings a source through its pool, or, when every pooled connection is taken
// by jobs, through a one-connection pool of its own: a busy pool is not a database down.
func (c *Coordinator) pingSource(ctx context.Context, name string, pool *pgxpool.Pool) error {
	if s := pool.Stat(); s.AcquiredConns() < s.MaxConns() {
		return pool.Ping(ctx)
	}
	c.probeMu.Lock()
	probe := c.probePools[name]
	if probe == nil {
		cfg := pool.Config()
		cfg.MaxConns, cfg.MinConns = 1, 0
		var err error
		if probe, err = pgxpool.NewWithConfig(context.WithoutCancel(ctx), cfg); err != nil {
			c.probeMu.Unlock()
			return err
		}
		c.probePools[name] = probe
	}
	c.probeMu.Unlock()
	return probe.Ping(ctx)
}

// decode reads a small JSON body; it answers 400 itself and returns false on failure.
func (c *Coordinator) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxSmallBytes))
	if err := dec.Decode(v); err != nil {
		c.writeError(w, r, &apiError{status: http.StatusBadRequest, msg: fmt.Sprintf("invalid JSON body: %v", err)})
		return false
	}
	return true
}

// writeError answers with the status the error carries and an ErrorResponse. Unexpected
// errors are 500 and logged.
func (c *Coordinator) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var (
		fe *messages.FieldError
		ae *apiError
		pe *pgconn.PgError
	)
	resp := messages.ErrorResponse{Error: err.Error()}
	status := http.StatusInternalServerError
	switch {
	case errors.As(err, &fe):
		status, resp.Error, resp.Field = http.StatusBadRequest, fe.Reason, fe.Field
	case errors.As(err, &ae):
		status, resp.Field, resp.JobState = ae.status, ae.field, ae.jobState
		if ae.retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(ae.retryAfter.Seconds())))
		}
	case errors.Is(err, bus.ErrNoPlan):
		status = http.StatusNotFound
	case errors.As(err, &pe) && pe.Code == "42501": // insufficient_privilege
		status, resp.Field = http.StatusBadRequest, "table"
	case errors.As(err, &pe) && strings.HasPrefix(pe.Code, "22"):
		// A data exception (a value out of range, a bad cast) comes from the table's rows:
		// the same request meets it again, so it is no 5xx for a client to retry.
		status, resp.Field = http.StatusUnprocessableEntity, "table"
	case pgconn.SafeToRetry(err) || errors.Is(err, context.DeadlineExceeded):
		status = http.StatusServiceUnavailable
	}
	if status >= 500 {
		c.log.Warn("request failed", "method", r.Method, "path", r.URL.Path, "status", status, "error", err)
	} else {
		c.log.Debug("request refused", "method", r.Method, "path", r.URL.Path, "status", status, "field", resp.Field, "error", resp.Error)
	}
	writeJSON(w, status, resp)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client may be gone; nothing to do about it
}

func (c *Coordinator) handlePredict(w http.ResponseWriter, r *http.Request) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(c.cfg.PlanTimeout + c.cfg.WriteTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxSmallBytes))
	if err != nil {
		c.writeError(w, r, &apiError{status: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("reading the spec: %v", err), field: "spec"})
		return
	}
	st, err := c.submit(r.Context(), body, r.Header.Get("Idempotency-Key"), c.createPrediction)
	if err != nil {
		c.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, st)
}

func (c *Coordinator) handleScorerJobs(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, c.scorerJobs())
}

func (c *Coordinator) handleScored(w http.ResponseWriter, r *http.Request) {
	var rep messages.ScoreReport
	if !c.decode(w, r, &rep) {
		return
	}
	if err := c.reportScored(r.Context(), r.PathValue("id"), rep); err != nil {
		c.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
