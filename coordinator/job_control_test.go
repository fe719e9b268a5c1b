package coordinator

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"pgtrain/coordinator/client"
	"pgtrain/internal/bus"
	"pgtrain/internal/testenv"
	"pgtrain/messages"
)

// submitN submits n iris jobs and returns their ids in submission order (all at one
// instant of r's clock: the job order is still the submission order).
func submitN(t *testing.T, r *running, n int, mutate func(m map[string]any)) []string {
	t.Helper()
	var ids []string
	for range n {
		st, err := r.cl.Submit(context.Background(), specJSON(t, mutate))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, st.ID)
	}
	return ids
}

// cleaned waits until an ended job's cleanup (snapshot, purges) is recorded.
func cleaned(t *testing.T, r *running, id string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, "the ended job's cleanup", func() bool {
		r.c.mu.Lock()
		defer r.c.mu.Unlock()
		j := r.c.jobs[id]
		return j != nil && j.rec.Cleaned
	})
}

// subjectCounts is how many messages of a stream lie on each subject matching filter.
func subjectCounts(t *testing.T, e *env, stream, filter string) map[string]uint64 {
	t.Helper()
	s, err := e.bus.JS.Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background(), jetstream.WithSubjectFilter(filter))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects
}

// publishBatches puts a page of a job on RAW and on READY, as a fetcher and a preprocessor
// would (the content does not matter to the coordinator).
func publishBatches(t *testing.T, e *env, id string, page int) {
	t.Helper()
	b := messages.BatchID{JobID: id, Pass: 0, Range: 0, Page: page}
	names := e.bus.Names()
	for _, subject := range []string{names.RawSubject(b), names.ReadySubject(b)} {
		if _, err := e.bus.JS.Publish(context.Background(), subject, []byte("page")); err != nil {
			t.Fatalf("publishing %s: %v", subject, err)
		}
	}
}

// stateKeys lists the state bucket's keys that match filter.
func stateKeys(t *testing.T, r *running, filter string) []string {
	t.Helper()
	var keys []string
	err := r.c.st.scan(context.Background(), filter, func(e jetstream.KeyValueEntry) error {
		keys = append(keys, e.Key())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// A running job is cancelled: no lease is granted for it any more, the holder of one hears
// it at its next report, the trainer at its next one; cancelling again answers the same, and
// a job that is done cannot be cancelled.
func TestCancel(t *testing.T) {
	e, r, p := leaseJob(t)
	ctx := context.Background()
	id := p.JobID
	if _, err := r.cl.ClaimJob(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	held := mustLease(t, r.cl, "f1")
	publishBatches(t, e, id, 0)
	before, err := r.cl.Job(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	st, err := r.cl.Cancel(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != messages.JobCancelled || st.Fetch.Grants != before.Fetch.Grants {
		t.Fatalf("cancel answered %s with %d grants, want cancelled with %d", st.State, st.Fetch.Grants, before.Fetch.Grants)
	}
	noLease(t, r.cl, "a cancelled job")
	if _, err := r.cl.ReportLease(ctx, held.ID, messages.LeaseProgress{WorkerID: "f1", NextPage: 1, Rows: 10}); !errors.Is(err, client.ErrLeaseLost) {
		t.Fatalf("report on a lease of a cancelled job: %v, want ErrLeaseLost", err)
	}
	err = r.cl.ReportTrainer(ctx, id, messages.TrainerProgress{TrainerID: "t1", Consumed: 1})
	if !errors.Is(err, client.ErrLeaseLost) || !strings.Contains(err.Error(), "cancelled") {
		t.Fatalf("trainer report on a cancelled job: %v, want ErrLeaseLost naming the state", err)
	}
	again, err := r.cl.Cancel(ctx, id)
	if err != nil || again.State != messages.JobCancelled {
		t.Fatalf("second cancel: %+v, %v", again, err)
	}
	if _, err := r.cl.Cancel(ctx, "nope"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("cancel of an unknown job: %v", err)
	}
	// Its batches are purged as for any ended job.
	testenv.Eventually(t, 30*time.Second, "the cancelled job's batches purged", func() bool {
		names := e.bus.Names()
		return len(subjectCounts(t, e, names.ReadyStream(), names.ReadyJobSubjects(id))) == 0 &&
			len(subjectCounts(t, e, names.RawStream(), names.RawJobSubjects(id))) == 0
	})

	// A finished job: cancelling it is a 409 that names its state.
	done := submitN(t, r, 1, func(m map[string]any) { m["range_rows"] = 100 })[0]
	if id, err := r.cl.ClaimJob(ctx, "t2"); err != nil || id != done {
		t.Fatalf("claim: %q, %v", id, err)
	}
	if err := r.cl.ReportTrainer(ctx, done, messages.TrainerProgress{TrainerID: "t2", Epoch: 2, Done: true}); err != nil {
		t.Fatal(err)
	}
	_, err = r.cl.Cancel(ctx, done)
	if !errors.Is(err, client.ErrConflict) || !strings.Contains(err.Error(), "is done") {
		t.Fatalf("cancel of a done job: %v, want ErrConflict naming its state", err)
	}
}

// DELETE removes an ended job's batches on RAW and READY (by subject: other jobs keep
// theirs), its plan, task records, idempotency key and record; a running job is a 409.
func TestDelete(t *testing.T) {
	e, r, p := leaseJob(t)
	ctx := context.Background()
	id := p.JobID
	names := e.bus.Names()
	mustLease(t, r.cl, "f1") // a task record to remove
	err := r.cl.Delete(ctx, id)
	if !errors.Is(err, client.ErrConflict) || !strings.Contains(err.Error(), "is running") {
		t.Fatalf("delete of a running job: %v, want ErrConflict naming its state", err)
	}
	if _, err := r.cl.Job(ctx, id); err != nil {
		t.Fatalf("the refused delete removed the job: %v", err)
	}
	if _, err := r.cl.Cancel(ctx, id); err != nil {
		t.Fatal(err)
	}
	cleaned(t, r, id)
	// Pages that in-flight workers publish after the cancel, and another job's pages.
	publishBatches(t, e, id, 1)
	publishBatches(t, e, id, 2)
	publishBatches(t, e, "other", 0)
	if n := len(subjectCounts(t, e, names.RawStream(), names.RawJobSubjects(id))); n != 2 {
		t.Fatalf("%d RAW subjects of the job before the delete, want 2", n)
	}
	if keys := stateKeys(t, r, "range."+id+".>"); len(keys) == 0 {
		t.Fatal("no task record before the delete")
	}
	if keys := stateKeys(t, r, idemKey("*")); len(keys) == 0 {
		t.Fatal("no idempotency key before the delete")
	}

	if err := r.cl.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ stream, filter string }{
		{names.RawStream(), names.RawJobSubjects(id)},
		{names.ReadyStream(), names.ReadyJobSubjects(id)},
	} {
		if got := subjectCounts(t, e, tt.stream, tt.filter); len(got) != 0 {
			t.Errorf("%s still holds %v", tt.stream, got)
		}
	}
	for _, stream := range []string{names.RawStream(), names.ReadyStream()} {
		if got := subjectCounts(t, e, stream, ">"); len(got) != 1 {
			t.Errorf("%s holds %v, want the other job's page only", stream, got)
		}
	}
	if _, err := bus.GetPlan(ctx, e.bus.State, id); !errors.Is(err, bus.ErrNoPlan) {
		t.Errorf("plan after the delete: %v, want ErrNoPlan", err)
	}
	for _, filter := range []string{jobKey(id), "range." + id + ".>"} {
		if keys := stateKeys(t, r, filter); len(keys) != 0 {
			t.Errorf("state keys left: %v", keys)
		}
	}
	err = r.c.st.scan(ctx, idemKey("*"), func(e jetstream.KeyValueEntry) error {
		var named string
		if json.Unmarshal(e.Value(), &named) == nil && named == id {
			t.Errorf("idempotency key %s still names the job", e.Key())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.cl.Job(ctx, id); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("GET after the delete: %v, want ErrNotFound", err)
	}
	if _, err := r.cl.Plan(ctx, id); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("GET plan after the delete: %v, want ErrNotFound", err)
	}
	if err := r.cl.Delete(ctx, id); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("second delete: %v, want ErrNotFound", err)
	}
	if _, err := r.cl.Cancel(ctx, id); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("cancel after the delete: %v, want ErrNotFound", err)
	}

	// A restarted coordinator does not bring it back.
	r.stop(t)
	r2 := start(t, e, Config{Window: 3, LeaseTTL: time.Second, ReadyMaxBytes: 32 << 10})
	if _, err := r2.cl.Job(ctx, id); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("GET after a restart: %v, want ErrNotFound", err)
	}
}

// Finished jobs beyond --keep-jobs go, the oldest first; running ones stay whatever their
// number.
func TestRetentionByCount(t *testing.T) {
	e := newEnv(t)
	irisTable(t, e)
	r := start(t, e, Config{KeepJobs: 2})
	ctx := context.Background()
	ids := submitN(t, r, 5, nil)
	for _, id := range ids[:4] {
		if _, err := r.cl.Cancel(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	want := ids[2:] // the two newest finished ones and the running one
	testenv.Eventually(t, time.Minute, "the oldest finished jobs deleted", func() bool {
		jobs, err := r.cl.Jobs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, j := range jobs {
			got = append(got, j.ID)
		}
		return slices.Equal(got, want)
	})
	for _, id := range ids[:2] {
		if _, err := bus.GetPlan(ctx, e.bus.State, id); !errors.Is(err, bus.ErrNoPlan) {
			t.Errorf("plan of retired job %s: %v, want ErrNoPlan", id, err)
		}
	}
}

// A finished job goes --keep-jobs-for after it ended; a running job stays, and so does a job
// that ended more recently.
func TestRetentionByAge(t *testing.T) {
	e := newEnv(t)
	irisTable(t, e)
	r := start(t, e, Config{KeepJobsFor: time.Hour})
	ctx := context.Background()
	ids := submitN(t, r, 3, nil)
	if _, err := r.cl.Cancel(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	r.clock.advance(50 * time.Minute)
	if _, err := r.cl.Cancel(ctx, ids[1]); err != nil {
		t.Fatal(err)
	}
	r.c.applyRetention(ctx)
	if jobs, err := r.cl.Jobs(ctx); err != nil || len(jobs) != 3 {
		t.Fatalf("after 50 minutes: %d jobs, %v; want all 3", len(jobs), err)
	}
	r.clock.advance(11 * time.Minute)
	r.c.applyRetention(ctx)
	if _, err := r.cl.Job(ctx, ids[0]); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("job that ended 61 minutes ago: %v, want ErrNotFound", err)
	}
	for _, id := range ids[1:] {
		if _, err := r.cl.Job(ctx, id); err != nil {
			t.Fatalf("job %s: %v", id, err)
		}
	}
}

// Paging with a limit, a state filter and the cursor visits every job once, in order, also
// when a job is deleted between two pages.
func TestListPaging(t *testing.T) {
	e := newEnv(t)
	irisTable(t, e)
	r := start(t, e, Config{Limits: Limits{ListJobs: 3}})
	ctx := context.Background()
	ids := submitN(t, r, 7, nil)
	cancelled := map[string]bool{}
	for _, i := range []int{1, 4, 5} {
		if _, err := r.cl.Cancel(ctx, ids[i]); err != nil {
			t.Fatal(err)
		}
		cancelled[ids[i]] = true
	}
	all, err := r.cl.Jobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, j := range all {
		order = append(order, j.ID)
	}
	if !slices.Equal(order, ids) {
		t.Fatalf("Jobs listed %v, want the submission order %v", order, ids)
	}

	tests := []struct {
		name   string
		q      client.ListQuery
		delete string // deleted after the first page
		want   []string
	}{
		{name: "every job", q: client.ListQuery{Limit: 2}, want: order},
		{name: "default limit", q: client.ListQuery{}, want: order},
		{name: "cancelled", q: client.ListQuery{Limit: 2, State: messages.JobCancelled},
			want: slices.DeleteFunc(slices.Clone(order), func(id string) bool { return !cancelled[id] })},
		{name: "running", q: client.ListQuery{Limit: 3, State: messages.JobRunning},
			want: slices.DeleteFunc(slices.Clone(order), func(id string) bool { return cancelled[id] })},
		{name: "none done", q: client.ListQuery{Limit: 3, State: messages.JobDone}},
		{name: "a job deleted meanwhile", q: client.ListQuery{Limit: 2}, delete: order[1],
			want: slices.Delete(slices.Clone(order), 1, 2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := tt.q
			var got []string
			for pages := 0; ; pages++ {
				page, err := r.cl.JobsPage(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				if limit := cmp.Or(tt.q.Limit, 3); len(page.Jobs) > limit {
					t.Fatalf("page of %d jobs, limit %d", len(page.Jobs), limit)
				}
				for _, j := range page.Jobs {
					if tt.q.State != "" && j.State != tt.q.State {
						t.Fatalf("job %s is %s, filter %s", j.ID, j.State, tt.q.State)
					}
					got = append(got, j.ID)
				}
				if pages == 0 && tt.delete != "" {
					if !cancelled[tt.delete] {
						if _, err := r.cl.Cancel(ctx, tt.delete); err != nil {
							t.Fatal(err)
						}
					}
					if err := r.cl.Delete(ctx, tt.delete); err != nil {
						t.Fatal(err)
					}
					// The deleted job was on the first page: the rest is unchanged.
					got = slices.DeleteFunc(got, func(id string) bool { return id == tt.delete })
				}
				if page.Next == "" {
					break
				}
				q.Cursor = page.Next
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("paged %v, want %v", got, tt.want)
			}
		})
	}
}

// A bad list query is a 400 naming the parameter.
func TestListRefusesBadQueries(t *testing.T) {
	e := newEnv(t)
	r := start(t, e, Config{Limits: Limits{ListJobs: 50}})
	tests := []struct {
		query, field string
	}{
		{"limit=0", "limit"},
		{"limit=51", "limit"},
		{"limit=x", "limit"},
		{"limit=1&limit=2", "limit"},
		{"state=finished", "state"},
		{"cursor=!!", "cursor"},
		{"cursor=" + strings.Repeat("A", maxCursorLen+1), "cursor"},
		{"cursor=bm90LWEtY3Vyc29y", "cursor"}, // base64 of "not-a-cursor"
		{"page=2", "page"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			var er messages.ErrorResponse
			resp, err := http.Get(fmt.Sprintf("http://%s/v1/jobs?%s", r.c.Addr(), tt.query))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if err := json.NewDecoder(resp.Body).Decode(&er); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusBadRequest || er.Field != tt.field {
				t.Fatalf("status %d, field %q (%s); want 400 naming %q", resp.StatusCode, er.Field, er.Error, tt.field)
			}
		})
	}
}

func TestCursorRoundTrip(t *testing.T) {
	tests := []listCursor{
		{created: time.Unix(0, 0), id: "a"},
		{created: time.Date(2026, 12, 2, 7, 0, 0, 123456789, time.UTC), id: "iris-0a1b2c3d"},
		{created: time.Unix(0, -5), id: strings.Repeat("z", 64)},
	}
	for _, k := range tests {
		s := k.encode()
		if len(s) > maxCursorLen {
			t.Errorf("cursor of %v is %d long, over %d", k, len(s), maxCursorLen)
		}
		got, err := decodeCursor(s)
		if err != nil || !got.created.Equal(k.created) || got.id != k.id {
			t.Errorf("decode(encode(%v)) = %v, %v", k, got, err)
		}
	}
}

func FuzzDecodeCursor(f *testing.F) {
	f.Add(listCursor{created: time.Unix(1, 2), id: "iris-01"}.encode())
	f.Add("")
	f.Add("MTIzLg")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := decodeCursor(s)
		if err != nil {
			return
		}
		again, err := decodeCursor(k.encode())
		if err != nil || !again.created.Equal(k.created) || again.id != k.id {
			t.Fatalf("%q decodes to %v, whose encoding decodes to %v, %v", s, k, again, err)
		}
	})
}
