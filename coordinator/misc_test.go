package coordinator

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/internal/pgutil"
	"pgtrain/messages"
)

// A retried lease request (same Idempotency-Key) gets the same lease, not a second range.
func TestLeaseRequestIsIdempotentPerKey(t *testing.T) {
	_, r, _ := leaseJob(t)
	url := "http://" + r.c.Addr() + "/v1/leases"
	var first, again messages.Lease
	for _, out := range []*messages.Lease{&first, &again} {
		req := mustRequest(t, "POST", url, []byte(`{"worker_id": "w1"}`))
		req.Header.Set("Idempotency-Key", "lease-key-1")
		if code := doJSON(t, req, out); code != 200 {
			t.Fatalf("status %d", code)
		}
	}
	if first.ID == "" || first.ID != again.ID {
		t.Fatalf("first %q, retry %q", first.ID, again.ID)
	}
	other := mustLease(t, r.cl, "w2")
	if other.ID == first.ID || other.Range.Index == first.Range.Index {
		t.Fatalf("a new key got the same lease %+v", other)
	}
}

// readyz fails while any source is unreachable; healthz does not care.
func TestReadiness(t *testing.T) {
	e := newEnv(t)
	broken, err := pgutil.NewPool(context.Background(), e.dsn, 1)
	if err != nil {
		t.Fatal(err)
	}
	broken.Close()
	c, err := New(context.Background(), Config{}, map[string]*pgxpool.Pool{"": e.pool, "warehouse": broken}, e.bus, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	srv := newHTTPTestServer(t, c)
	if code := doJSON(t, mustRequest(t, "GET", srv+"/healthz", nil), nil); code != 200 {
		t.Fatalf("healthz %d", code)
	}
	if code := doJSON(t, mustRequest(t, "GET", srv+"/readyz", nil), nil); code != 503 {
		t.Fatalf("readyz with a closed source: %d, want 503", code)
	}
	c2, err := New(context.Background(), Config{}, map[string]*pgxpool.Pool{"": e.pool}, e.bus, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if code := doJSON(t, mustRequest(t, "GET", newHTTPTestServer(t, c2)+"/readyz", nil), nil); code != 200 {
		t.Fatalf("readyz: %d, want 200", code)
	}
}

// Re-reading later epochs, the window holds no more ranges than fit in 3/4 of READY: a
// READY full of batches ahead of the trainer would stall the job.
func TestCapWindow(t *testing.T) {
	// A ready row of 1 input and 1 label is 16 B; 10,000 rows in pages of 1,000 are about
	// 160,000 B + 11 × 512 B = 165,632 B.
	tests := []struct {
		name       string
		replay     bool
		ready      int64
		wantWindow int
		wantErr    bool
	}{
		{name: "ample READY keeps the window", ready: 1 << 30, wantWindow: 8},
		{name: "READY for 3 ranges", ready: 700_000, wantWindow: 3},
		{name: "READY for 1 range", ready: 250_000, wantWindow: 1},
		{name: "READY smaller than a range", ready: 200_000, wantErr: true},
		{name: "replay is not capped", replay: true, ready: 200_000, wantWindow: 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &messages.Plan{InputDim: 1, LabelDim: 1, PageRows: 1000, Replay: tt.replay, Window: 8,
				Ranges: []messages.KeyRange{{Rows: 9000}, {Rows: 10_000}, {Rows: 8000}}}
			err := capWindow(p, tt.ready)
			var fe *messages.FieldError
			if tt.wantErr {
				if !errors.As(err, &fe) || fe.Field != "range_rows" {
					t.Fatalf("capWindow = %v, want a range_rows field error", err)
				}
				return
			}
			if err != nil || p.Window != tt.wantWindow {
				t.Fatalf("window %d, %v; want %d", p.Window, err, tt.wantWindow)
			}
		})
	}
}

func TestSizePages(t *testing.T) {
	tests := []struct {
		name       string
		pgType     string
		features   int
		specRows   int
		payload    int
		rows       int64
		ready      int64
		wantRows   int
		wantReplay bool
	}{
		// A raw row is 8 B of key plus 2+8 B per numeric column, a ready row 8 + 4×(in+out) B;
		// pages hold what fits in 3/4 of the payload, at most 16384 rows.
		{name: "narrow rows", features: 1, payload: 1 << 20, rows: 1000, ready: 1 << 30, wantRows: 16384, wantReplay: true},
		{name: "wide rows", features: 1000, payload: 1 << 20, rows: 1000, ready: 1 << 30, wantRows: (3 << 20) / 4 / (8 + 1001*(rawColumnOverhead+8)), wantReplay: true},
		{name: "spec decides", features: 1, specRows: 77, payload: 1 << 20, rows: 1000, ready: 1 << 30, wantRows: 77, wantReplay: true},
		{name: "too big to replay", features: 1000, payload: 1 << 20, rows: 1_000_000, ready: 1 << 30, wantRows: (3 << 20) / 4 / (8 + 1001*(rawColumnOverhead+8))},
		// real columns travel as float32: 4 B a value.
		{name: "wide real rows", pgType: "real", features: 1000, payload: 1 << 20, rows: 1000, ready: 1 << 30, wantRows: (3 << 20) / 4 / (8 + 1001*(rawColumnOverhead+4)), wantReplay: true},
		{name: "wide double precision rows", pgType: "double precision", features: 1000, payload: 1 << 20, rows: 1000, ready: 1 << 30, wantRows: (3 << 20) / 4 / (8 + 1001*(rawColumnOverhead+8)), wantReplay: true},
		{name: "16 reals and a real label", pgType: "real", features: 16, payload: 1 << 20, rows: 1000, ready: 1 << 30, wantRows: (3 << 20) / 4 / (8 + 17*(rawColumnOverhead+4)), wantReplay: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			num := messages.ColumnPlan{Name: "x", Kind: messages.KindNumeric, PGType: tt.pgType}
			p := &messages.Plan{Label: num, InputDim: tt.features, LabelDim: 1, Ranges: make([]messages.KeyRange, 1)}
			for range tt.features {
				p.Features = append(p.Features, num)
			}
			p.Expected.Rows = tt.rows
			in := &planInput{spec: messages.JobSpec{PageRows: tt.specRows}}
			sizePages(in, p, nil, sizing{maxPayload: tt.payload, readyMaxBytes: tt.ready, window: 4})
			if p.PageRows != tt.wantRows || p.Replay != tt.wantReplay || p.Window != 4 {
				t.Fatalf("page rows %d replay %v, want %d %v", p.PageRows, p.Replay, tt.wantRows, tt.wantReplay)
			}
		})
	}
}

// New reads the state bucket (and READY's size) under the caller's context: a cancelled
// one stops it.
func TestNewStopsWithItsContext(t *testing.T) {
	e := newEnv(t)
	for _, cfg := range []Config{{}, {ReadyMaxBytes: 64 << 20}} {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := New(ctx, cfg, map[string]*pgxpool.Pool{"": e.pool}, e.bus, testLogger(t)); !errors.Is(err, context.Canceled) {
			t.Fatalf("New with a cancelled context and ReadyMaxBytes %d: err = %v, want context.Canceled", cfg.ReadyMaxBytes, err)
		}
	}
	if _, err := New(context.Background(), Config{}, map[string]*pgxpool.Pool{"": e.pool}, e.bus, testLogger(t)); err != nil {
		t.Fatal(err)
	}
}
