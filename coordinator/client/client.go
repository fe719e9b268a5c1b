package client

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"pgtrain/internal/pgutil"
	"pgtrain/messages"
)

// IdempotencyHeader carries a key that makes a retried POST return the first answer instead
// of creating a second job or a second lease.
const IdempotencyHeader = "Idempotency-Key"

// Sentinel errors, matched with errors.Is.
var (
	// ErrLeaseLost: the coordinator answered 409 to a lease or trainer report. The lease
	// expired and went to another worker (or the job went to another trainer), or the job
	// ended. The caller must stop working on it.
	ErrLeaseLost = errors.New("lease lost")
	// ErrNotFound: the job (or lease) does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the job's state does not allow a cancel or a delete (the coordinator
	// answered 409: a finished job cannot be cancelled, a running one cannot be deleted).
	ErrConflict = errors.New("conflict")
)

// errBadURL: the coordinator URL does not parse.
var errBadURL = errors.New("invalid coordinator URL")

// APIError is any other error answer of the coordinator. Field names the job spec field at
// fault, when there is one.
type APIError struct {
	Status  int
	Message string
	Field   string
}

func (e *APIError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("coordinator: %d %s: %s: %s", e.Status, http.StatusText(e.Status), e.Field, e.Message)
	}
	return fmt.Sprintf("coordinator: %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// Refused reports whether the coordinator refused the caller's credentials (401 or 403):
// a permanent fault that retrying cannot mend, so a worker stops instead of retrying.
func Refused(err error) bool {
	var e *APIError
	return errors.As(err, &e) && (e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden)
}

// Client talks to one coordinator. It is safe for concurrent use.
type Client struct {
	base  string
	token string // sent as a bearer token; never logged
	log   *slog.Logger
	http  *retryablehttp.Client
	once  *retryablehttp.Client // no retries: health probes must answer now
	// reached is set by the first answer of the coordinator. With failFast, until then a
	// refused connection is a wrong URL or a coordinator that is not running, reported at
	// once; after it, the coordinator restarting, which the retries ride out.
	reached  atomic.Bool
	failFast bool
}

// Option configures a Client.
type Option func(*options)

type options struct {
	token    string
	tls      *tls.Config
	failFast bool
}

// WithToken sends token as a bearer token with every request. The retry policy does not
// retry a 401 or 403: a wrong token stays wrong.
func WithToken(token string) Option { return func(o *options) { o.token = token } }

// FailFast returns a refused connection at once, not after the retries, until the
// coordinator has answered once: for a command a person runs, where a wrong URL or a
// coordinator that is not running should say so now. Without it a new client rides out a
// coordinator that is (re)starting, as a worker must; after a first answer both do.
func FailFast() Option { return func(o *options) { o.failFast = true } }

// WithTLSConfig sets the TLS configuration of https:// coordinators, e.g. RootCAs for a
// coordinator whose certificate a private CA signed.
func WithTLSConfig(cfg *tls.Config) Option { return func(o *options) { o.tls = cfg } }

// Retry policy: about 15 s of retries, enough to ride out a coordinator restart.
const (
	requestTimeout = 30 * time.Second
	retryMax       = 10
	retryWaitMin   = 100 * time.Millisecond
	retryWaitMax   = 2 * time.Second
)

// New returns a client for the coordinator at baseURL (e.g. "http://127.0.0.1:8080").
// log receives the retry messages; nil discards them.
func New(baseURL string, log *slog.Logger, opts ...Option) *Client {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	hc := &http.Client{Timeout: requestTimeout}
	if o.tls != nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = o.tls
		hc.Transport = tr
	}
	c := &Client{base: strings.TrimRight(baseURL, "/"), token: o.token, log: log, failFast: o.failFast}
	mk := func(retries int) *retryablehttp.Client {
		rc := retryablehttp.NewClient()
		rc.HTTPClient = hc
		// Each failed attempt is a debug line; do logs one line for a request that needed retries.
		rc.Logger = debugLogger{log}
		rc.RetryMax = retries
		rc.RetryWaitMin = retryWaitMin
		rc.RetryWaitMax = retryWaitMax
		rc.CheckRetry = c.retryPolicy
		rc.RequestLogHook = countAttempts
		// Hand back the last answer after the retries so its error body can be read.
		rc.ErrorHandler = retryablehttp.PassthroughErrorHandler
		return rc
	}
	c.http, c.once = mk(retryMax), mk(0)
	return c
}

// retryPolicy retries what can succeed on a later try: a connection to a coordinator that
// answered before (it is restarting), 408, 429, 502, 503 and 504. Not an unknown host, a
// refused certificate or URL, a first contact that fails with FailFast, any other 4xx, nor a
// 500: that is a fault the coordinator did not expect, which the same request meets again.
func (c *Client) retryPolicy(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		if unknownHost(err) || c.failFast && !c.reached.Load() {
			return false, nil
		}
		return retryablehttp.DefaultRetryPolicy(ctx, resp, err)
	}
	c.reached.Store(true)
	switch resp.StatusCode {
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true, nil
	}
	return false, nil
}

func unknownHost(err error) bool {
	var dnsErr *net.DNSError
	return errors.As(err, &dnsErr) && dnsErr.IsNotFound
}

// attemptsKey is the context key of a request's attempt counter.
type attemptsKey struct{}

// countAttempts records the attempt number (0 for the first) in the request's counter.
func countAttempts(_ retryablehttp.Logger, req *http.Request, attempt int) {
	if n, ok := req.Context().Value(attemptsKey{}).(*int); ok {
		*n = attempt
	}
}

// debugLogger gives retryablehttp's messages to slog at debug: a failed attempt that is
// retried is not an error, and the caller reports the outcome once.
type debugLogger struct{ log *slog.Logger }

func (d debugLogger) Error(msg string, kv ...any) { d.log.Debug(msg, kv...) }
func (d debugLogger) Warn(msg string, kv ...any)  { d.log.Debug(msg, kv...) }
func (d debugLogger) Info(msg string, kv ...any)  { d.log.Debug(msg, kv...) }
func (d debugLogger) Debug(msg string, kv ...any) { d.log.Debug(msg, kv...) }

// Submit posts a job spec (JSON) and returns the planned job.
func (c *Client) Submit(ctx context.Context, spec []byte) (*messages.JobStatus, error) {
	var st messages.JobStatus
	h := http.Header{IdempotencyHeader: {newKey()}}
	if _, err := c.do(ctx, c.http, http.MethodPost, "/v1/jobs", h, spec, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Job returns one job's status; ErrNotFound if there is no such job.
func (c *Client) Job(ctx context.Context, id string) (*messages.JobStatus, error) {
	var st messages.JobStatus
	if _, err := c.do(ctx, c.http, http.MethodGet, "/v1/jobs/"+url.PathEscape(id), nil, nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Jobs lists every job, oldest first, page by page.
func (c *Client) Jobs(ctx context.Context) ([]messages.JobStatus, error) {
	var out []messages.JobStatus
	q := ListQuery{}
	for {
		page, err := c.JobsPage(ctx, q)
		if err != nil {
			return nil, err
		}
		out = append(out, page.Jobs...)
		if page.Next == "" {
			return out, nil
		}
		q.Cursor = page.Next
	}
}

// ListQuery selects a page of GET /v1/jobs; zero fields are left to the coordinator.
type ListQuery struct {
	// Limit is the page size (the coordinator's default and bound apply).
	Limit int
	// State keeps the jobs in one state (messages.JobRunning, ...).
	State string
	// Cursor is the Next of the previous page.
	Cursor string
}

// JobsPage returns one page of jobs, oldest first; its Next is the cursor of the next page
// ("" on the last one).
func (c *Client) JobsPage(ctx context.Context, q ListQuery) (*messages.JobList, error) {
	v := url.Values{}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.State != "" {
		v.Set("state", q.State)
	}
	if q.Cursor != "" {
		v.Set("cursor", q.Cursor)
	}
	path := "/v1/jobs"
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	var out messages.JobList
	if _, err := c.do(ctx, c.http, http.MethodGet, path, nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Cancel cancels a running job and returns its status (state cancelled). Cancelling a
// cancelled job again is no error; a job that is done or failed is ErrConflict.
func (c *Client) Cancel(ctx context.Context, id string) (*messages.JobStatus, error) {
	var st messages.JobStatus
	if _, err := c.do(ctx, c.http, http.MethodPost, "/v1/jobs/"+url.PathEscape(id)+"/cancel", nil, nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Delete removes a finished job: its state, its plan and its batches on the bus. A running
// job is ErrConflict (cancel it first); a job that does not exist is ErrNotFound.
func (c *Client) Delete(ctx context.Context, id string) error {
	_, err := c.do(ctx, c.http, http.MethodDelete, "/v1/jobs/"+url.PathEscape(id), nil, nil, nil)
	return err
}

// Plan returns a job's plan.
func (c *Client) Plan(ctx context.Context, id string) (*messages.Plan, error) {
	var p messages.Plan
	if _, err := c.do(ctx, c.http, http.MethodGet, "/v1/jobs/"+url.PathEscape(id)+"/plan", nil, nil, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// Ranges returns where each key range of the epoch the trainer is in stands.
func (c *Client) Ranges(ctx context.Context, id string) (*messages.JobRanges, error) {
	var rs messages.JobRanges
	if _, err := c.do(ctx, c.http, http.MethodGet, "/v1/jobs/"+url.PathEscape(id)+"/ranges", nil, nil, &rs); err != nil {
		return nil, err
	}
	return &rs, nil
}

// Lease asks for a range to fetch. It returns nil, nil when there is no work now (every
// range is leased or done, or the trainer's window is full): ask again later.
func (c *Client) Lease(ctx context.Context, workerID string) (*messages.Lease, error) {
	var l messages.Lease
	h := http.Header{IdempotencyHeader: {newKey()}}
	status, err := c.do(ctx, c.http, http.MethodPost, "/v1/leases", h, messages.LeaseRequest{WorkerID: workerID}, &l)
	if err != nil {
		return nil, err
	}
	if status == http.StatusNoContent {
		return nil, nil
	}
	return &l, nil
}

// ReportLease renews a lease and records progress (or completes or releases it with
// p.Done / p.Release). It returns the renewed lease, or ErrLeaseLost when the caller no
// longer holds it (the range was leased again after an expiry, the job ended, or the job is
// gone). Reporting a completion twice is harmless.
func (c *Client) ReportLease(ctx context.Context, leaseID string, p messages.LeaseProgress) (*messages.Lease, error) {
	var l messages.Lease
	if _, err := c.do(ctx, c.http, http.MethodPost, "/v1/leases/"+url.PathEscape(leaseID), nil, p, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// Bus returns the state of the streams and of the preprocessors' consumer: pages waiting,
// in flight and redelivered, and READY's size against its limit.
func (c *Client) Bus(ctx context.Context) (*messages.BusStatus, error) {
	var st messages.BusStatus
	if _, err := c.do(ctx, c.http, http.MethodGet, "/v1/bus", nil, nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// ClaimJob asks for a job to train; "" when there is none. A trainer that restarts with
// the same id gets its job back.
func (c *Client) ClaimJob(ctx context.Context, trainerID string) (string, error) {
	r, err := c.Claim(ctx, trainerID)
	return r.JobID, err
}

// Claim is ClaimJob with the whole answer: for a sweep job, the variant to train. A zero
// answer means there is no work.
func (c *Client) Claim(ctx context.Context, trainerID string) (messages.ClaimResponse, error) {
	var r messages.ClaimResponse
	status, err := c.do(ctx, c.http, http.MethodPost, "/v1/trainers/claim", nil, messages.ClaimRequest{TrainerID: trainerID}, &r)
	if err != nil || status == http.StatusNoContent {
		return messages.ClaimResponse{}, err
	}
	return r, nil
}

// ReportTrainer records the trainer's position (which moves the lease window) and epoch
// results. ErrLeaseLost means the job belongs to another trainer now or has ended.
func (c *Client) ReportTrainer(ctx context.Context, jobID string, p messages.TrainerProgress) error {
	if p.Version == 0 {
		p.Version = messages.SchemaVersion
	}
	_, err := c.do(ctx, c.http, http.MethodPost, "/v1/jobs/"+url.PathEscape(jobID)+"/progress", nil, p, nil)
	return err
}

// FailJob ends a job as failed with req.Error, for a permanent error a worker cannot get
// past (a row the plan cannot encode, for instance). req names the caller: the job's
// trainer, or a fetcher and the lease it holds. Failing a job that already ended is a no-op.
func (c *Client) FailJob(ctx context.Context, jobID string, req messages.FailRequest) error {
	_, err := c.do(ctx, c.http, http.MethodPost, "/v1/jobs/"+url.PathEscape(jobID)+"/fail", nil, req, nil)
	return err
}

// SubmitPrediction submits a batch prediction job (a JSON messages.PredictionSpec, sent as
// is so that the coordinator names what is wrong with it) and returns its status.
func (c *Client) SubmitPrediction(ctx context.Context, spec []byte) (*messages.JobStatus, error) {
	var st messages.JobStatus
	h := http.Header{IdempotencyHeader: {newKey()}}
	if _, err := c.do(ctx, c.http, http.MethodPost, "/v1/predictions", h, spec, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// ScorerJobs lists the running prediction jobs, which the scorers consume.
func (c *Client) ScorerJobs(ctx context.Context) ([]string, error) {
	var out messages.ScorerJobs
	if _, err := c.do(ctx, c.http, http.MethodGet, "/v1/scorers/jobs", nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Jobs, nil
}

// ReportScored records a batch written to a prediction job's output table; reporting it
// again is harmless. ErrLeaseLost means the job has ended.
func (c *Client) ReportScored(ctx context.Context, jobID string, rep messages.ScoreReport) error {
	if rep.Version == 0 {
		rep.Version = messages.SchemaVersion
	}
	_, err := c.do(ctx, c.http, http.MethodPost, "/v1/jobs/"+url.PathEscape(jobID)+"/scored", nil, rep, nil)
	return err
}

// Healthy reports whether the coordinator is up and reaches NATS and PostgreSQL. It does not
// retry: it describes the present.
func (c *Client) Healthy(ctx context.Context) error {
	_, err := c.do(ctx, c.once, http.MethodGet, "/readyz", nil, nil, nil)
	return err
}

// Live reports whether the coordinator answers at all (its /healthz), without retries: what
// a worker waits for at start. Permanent tells the errors waiting does not mend.
func (c *Client) Live(ctx context.Context) error {
	_, err := c.do(ctx, c.once, http.MethodGet, "/healthz", nil, nil, nil)
	return err
}

// Permanent reports whether err, from a request to the coordinator, is a fault that
// waiting does not mend: a host name that does not resolve, a refused certificate, a
// malformed URL, or an answer the coordinator means (4xx but 408 and 429).
func Permanent(err error) bool {
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		return apiErr.Status >= 400 && apiErr.Status < 500 &&
			apiErr.Status != http.StatusRequestTimeout && apiErr.Status != http.StatusTooManyRequests
	}
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrLeaseLost) {
		return true
	}
	var certErr *tls.CertificateVerificationError
	return unknownHost(err) || errors.As(err, &certErr) || errors.Is(err, errBadURL)
}

// do sends one request (with c's retries) and decodes a 2xx body into out. It returns the
// status of a successful answer; any other answer becomes an error.
func (c *Client) do(ctx context.Context, hc *retryablehttp.Client, method, path string, h http.Header, in, out any) (int, error) {
	var body any
	if raw, ok := in.([]byte); ok {
		body = raw // sent as is: the coordinator reports what is wrong with it
	} else if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, fmt.Errorf("encoding the %s %s request: %w", method, path, err)
		}
		body = b
	}
	retries := 0 // the number of the last attempt, set by countAttempts
	ctx = context.WithValue(ctx, attemptsKey{}, &retries)
	req, err := retryablehttp.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		// url.Parse's error quotes the whole URL, password included.
		return 0, fmt.Errorf("%s %s: %w %s", method, path, errBadURL, pgutil.Redact(c.base))
	}
	for k, v := range h {
		req.Header[k] = v
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	start := time.Now()
	resp, err := hc.Do(req)
	if retries > 0 {
		outcome := "answered"
		if err != nil {
			outcome = "gave up"
		}
		c.log.Info("coordinator request retried", "method", method, "path", path, "attempts", retries+1,
			"seconds", time.Since(start).Round(100*time.Millisecond).Seconds(), "outcome", outcome)
	}
	if err != nil {
		return 0, c.transportError(method, path, err, retries+1)
	}
	c.reached.Store(true)
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return 0, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if out != nil && resp.StatusCode != http.StatusNoContent && len(data) > 0 {
			if err := json.Unmarshal(data, out); err != nil {
				return 0, fmt.Errorf("%s %s: decoding the answer: %w", method, path, err)
			}
		}
		return resp.StatusCode, nil
	}
	return 0, answerError(method, path, resp.StatusCode, data)
}

// conflictError is a 409: kind is ErrConflict or ErrLeaseLost.
type conflictError struct {
	msg      string
	jobState string
	kind     error
}

func (e *conflictError) Error() string { return e.msg }
func (e *conflictError) Unwrap() error { return e.kind }

// JobState is the job's state that a 409 answer names ("" when it names none): a worker
// whose job was cancelled tells that from a lease lost to another worker.
func JobState(err error) string {
	var ce *conflictError
	if errors.As(err, &ce) {
		return ce.jobState
	}
	return ""
}

// transportError says why no answer came and what to check, without the URL's password.
func (c *Client) transportError(method, path string, err error, attempts int) error {
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		err = urlErr.Err // its text quotes the whole URL
	}
	where := pgutil.Redact(c.base)
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return fmt.Errorf("%s %s: the coordinator's host %q does not resolve (check --coordinator %s): %w", method, path, dnsErr.Name, where, err)
	case errors.Is(err, syscall.ECONNREFUSED):
		tries := ""
		if attempts > 1 {
			tries = fmt.Sprintf(" in %d attempts", attempts)
		}
		return fmt.Errorf("%s %s: nothing listens at %s%s (is the coordinator running, and is --coordinator right?): %w", method, path, where, tries, err)
	case attempts > 1:
		return fmt.Errorf("%s %s: the coordinator at %s did not answer in %d attempts: %w", method, path, where, attempts, err)
	}
	return fmt.Errorf("%s %s: the coordinator at %s: %w", method, path, where, err)
}

func answerError(method, path string, status int, body []byte) error {
	var er messages.ErrorResponse
	if json.Unmarshal(body, &er) != nil || er.Error == "" {
		er.Error = strings.TrimSpace(string(body))
		if len(er.Error) > 200 {
			er.Error = er.Error[:200]
		}
	}
	switch {
	case status == http.StatusConflict && path == "/v1/predictions":
		// The output table exists: the caller's to fix, not a lost lease.
	case status == http.StatusConflict && (method == http.MethodDelete || strings.HasSuffix(path, "/cancel")):
		// A user's job control, not a worker's lease.
		return &conflictError{msg: fmt.Sprintf("%s %s: %s", method, path, er.Error), jobState: er.JobState, kind: ErrConflict}
	case status == http.StatusConflict:
		return &conflictError{msg: fmt.Sprintf("%s %s: %s: %s", method, path, er.Error, ErrLeaseLost), jobState: er.JobState, kind: ErrLeaseLost}
	case status == http.StatusNotFound:
		return fmt.Errorf("%s %s: %s: %w", method, path, er.Error, ErrNotFound)
	}
	return &APIError{Status: status, Message: er.Error, Field: er.Field}
}

func newKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}
