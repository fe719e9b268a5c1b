package coordinator

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"pgtrain/messages"
)

// leaseRun is what leaseClients measured: the latency of every grant (POST /v1/leases)
// and of every report (renewal or completion, POST /v1/leases/{id}).
type leaseRun struct {
	grants, reports []time.Duration
	ranges          int // ranges completed
}

// percentile is the q-quantile of ds (nearest rank); ds is sorted in place.
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[int(q*float64(len(ds)-1)+0.5)]
}

// submitLeaseJobs submits n jobs on the iris table in 200 ranges of 5 rows each.
func submitLeaseJobs(tb testing.TB, r *running, n int) []string {
	tb.Helper()
	var ids []string
	for range n {
		st, err := r.cl.Submit(context.Background(), specJSON(tb, func(m map[string]any) { m["range_rows"] = 5 }))
		if err != nil {
			tb.Fatal(err)
		}
		ids = append(ids, st.ID)
	}
	return ids
}

// leaseClients runs fetchers concurrent lease clients against the coordinator at base until
// no range is left to lease: each leases a range, renews it twice and completes it, as a
// fetcher reading a range of three pages does. Each client has its own connections, as
// separate fetcher processes do. Any answer but a lease, a renewal or "no work" fails tb.
func leaseClients(tb testing.TB, base string, fetchers int) leaseRun {
	tb.Helper()
	var (
		mu  sync.Mutex
		out leaseRun
		wg  sync.WaitGroup
	)
	errc := make(chan error, fetchers)
	for i := range fetchers {
		worker := fmt.Sprintf("fetcher-%d", i)
		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}, Timeout: 30 * time.Second}
		wg.Go(func() {
			defer hc.CloseIdleConnections()
			var grants, reports []time.Duration
			done := 0
			defer func() {
				mu.Lock()
				out.grants = append(out.grants, grants...)
				out.reports = append(out.reports, reports...)
				out.ranges += done
				mu.Unlock()
			}()
			for {
				var l messages.Lease
				t0 := time.Now()
				status, err := postJSON(hc, base+"/v1/leases", messages.LeaseRequest{WorkerID: worker}, &l)
				grants = append(grants, time.Since(t0))
				if err != nil {
					errc <- err
					return
				}
				if status == http.StatusNoContent {
					return // every range is leased or done
				}
				for page := 1; page <= 3; page++ {
					p := messages.LeaseProgress{WorkerID: worker, NextPage: page, LastKey: l.Range.Lo + int64(page), Rows: int64(page), Done: page == 3}
					t0 := time.Now()
					status, err := postJSON(hc, base+"/v1/leases/"+l.ID, p, nil)
					reports = append(reports, time.Since(t0))
					if err == nil && status != http.StatusOK {
						err = fmt.Errorf("report %d of lease %s: status %d", page, l.ID, status)
					}
					if err != nil {
						errc <- err
						return
					}
				}
				done++
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		tb.Fatal(err)
	}
	return out
}

// postJSON posts v and decodes a 200 answer into out (if not nil).
func postJSON(hc *http.Client, url string, v, out any) (int, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	switch {
	case resp.StatusCode == http.StatusNoContent:
	case resp.StatusCode != http.StatusOK:
		return resp.StatusCode, fmt.Errorf("POST %s: %d %s", url, resp.StatusCode, body)
	case out != nil:
		if err := json.Unmarshal(body, out); err != nil {
			return 0, fmt.Errorf("decoding %s: %w", body, err)
		}
	}
	return resp.StatusCode, nil
}

// Sixteen fetchers leasing from two jobs at once get every range exactly once, and no
// request fails.
func TestConcurrentFetchersLeaseEveryRangeOnce(t *testing.T) {
	e := newEnv(t)
	irisTable(t, e)
	r := start(t, e, Config{Window: 1000, LeaseTTL: time.Minute})
	ids := submitLeaseJobs(t, r, 2)
	run := leaseClients(t, "http://"+r.c.Addr(), 16)
	want := 0
	for _, id := range ids {
		st, err := r.cl.Job(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if st.Fetch.Done != st.Ranges || st.Fetch.Grants != st.Ranges || st.Fetch.Leased != 0 || st.Fetch.RowsRead != 3*int64(st.Ranges) {
			t.Errorf("job %s: fetch %+v, want each of its %d ranges granted once and done with 3 rows", id, st.Fetch, st.Ranges)
		}
		want += st.Ranges
	}
	if run.ranges != want || len(run.reports) != 3*want {
		t.Errorf("clients completed %d ranges with %d reports, want %d and %d", run.ranges, len(run.reports), want, 3*want)
	}
}

// BenchmarkLeaseLatency measures the latency of lease grants and reports with 16 fetchers
// leasing at once, from one job and from four.
//
//	go test -run '^$' -bench LeaseLatency -benchtime 3x ./coordinator/
func BenchmarkLeaseLatency(b *testing.B) {
	for _, jobs := range []int{1, 4} {
		b.Run(fmt.Sprintf("jobs=%d", jobs), func(b *testing.B) {
			e := newEnv(b)
			irisTable(b, e)
			// Every iteration adds jobs that stay running: no per-source limit gets in the way.
			r := start(b, e, Config{Window: 1000, LeaseTTL: time.Minute, Limits: Limits{JobsPerSource: 1 << 20}})
			var grants, reports []time.Duration
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				submitLeaseJobs(b, r, jobs)
				b.StartTimer()
				run := leaseClients(b, "http://"+r.c.Addr(), 16)
				grants = append(grants, run.grants...)
				reports = append(reports, run.reports...)
			}
			ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
			b.ReportMetric(ms(percentile(grants, 0.50)), "grant-p50-ms")
			b.ReportMetric(ms(percentile(grants, 0.99)), "grant-p99-ms")
			b.ReportMetric(ms(percentile(reports, 0.50)), "report-p50-ms")
			b.ReportMetric(ms(percentile(reports, 0.99)), "report-p99-ms")
		})
	}
}
