package coordinator

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"pgtrain/messages"
)

// DefaultListJobs is the page size of GET /v1/jobs without a limit.
const DefaultListJobs = 100

// maxCursorLen bounds a cursor before it is decoded: a time and a job id fit in far less.
const maxCursorLen = 128

// listCursor is a position in the job order: the page after it starts with the first job
// created after it (ties by id). A position, not an index, so that jobs deleted or created
// between two pages shift nothing: paging visits every job that lives through it once.
type listCursor struct {
	created time.Time
	id      string
}

// after reports whether j comes after the cursor in the job order.
func (k listCursor) after(j *job) bool {
	return compareJobs(j.rec.CreatedAt, j.rec.ID, k.created, k.id) > 0
}

// compareJobs is the job order: creation time, then id. The wall clock only (UnixNano), as
// a cursor has it: a time read in this process also has a monotonic reading.
func compareJobs(aCreated time.Time, aID string, bCreated time.Time, bID string) int {
	return cmp.Or(cmp.Compare(aCreated.UnixNano(), bCreated.UnixNano()), cmp.Compare(aID, bID))
}

func (k listCursor) encode() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(k.created.UnixNano(), 10) + "." + k.id))
}

// decodeCursor reads a cursor that encode made; anything else is an error that names it.
func decodeCursor(s string) (listCursor, error) {
	bad := &apiError{status: http.StatusBadRequest, field: "cursor", msg: "cursor: not a cursor this coordinator gave (use the previous page's next)"}
	if len(s) > maxCursorLen {
		return listCursor{}, bad
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return listCursor{}, bad
	}
	ns, id, ok := strings.Cut(string(b), ".")
	n, err := strconv.ParseInt(ns, 10, 64)
	if !ok || err != nil || messages.ValidJobID(id) != nil {
		return listCursor{}, bad
	}
	return listCursor{created: time.Unix(0, n), id: id}, nil
}

// listQuery is a parsed GET /v1/jobs query.
type listQuery struct {
	limit  int
	state  string // "": every state
	cursor *listCursor
}

func (c *Coordinator) parseListQuery(q url.Values) (listQuery, error) {
	lq := listQuery{limit: min(DefaultListJobs, c.cfg.Limits.ListJobs)}
	for name, vs := range q {
		if len(vs) > 1 {
			return lq, &apiError{status: http.StatusBadRequest, field: name, msg: fmt.Sprintf("%s: give it once", name)}
		}
		switch name {
		case "limit", "state", "cursor":
		default:
			return lq, &apiError{status: http.StatusBadRequest, field: name, msg: fmt.Sprintf("unknown query parameter %q (limit, state, cursor)", name)}
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > c.cfg.Limits.ListJobs {
			return lq, &apiError{status: http.StatusBadRequest, field: "limit",
				msg: fmt.Sprintf("limit %q: want 1 to %d (--max-list-jobs)", v, c.cfg.Limits.ListJobs)}
		}
		lq.limit = n
	}
	if v := q.Get("state"); v != "" {
		if !slices.Contains(messages.JobStates, v) {
			return lq, &apiError{status: http.StatusBadRequest, field: "state",
				msg: fmt.Sprintf("state %q: want one of %s", v, strings.Join(messages.JobStates, ", "))}
		}
		lq.state = v
	}
	if v := q.Get("cursor"); v != "" {
		k, err := decodeCursor(v)
		if err != nil {
			return lq, err
		}
		lq.cursor = &k
	}
	return lq, nil
}

// listJobs is one page of jobs in the job order. Callers hold c.mu.
func (c *Coordinator) listJobs(q listQuery) messages.JobList {
	now := c.now()
	out := messages.JobList{Version: messages.SchemaVersion, Jobs: []messages.JobStatus{}}
	start := 0
	if q.cursor != nil {
		start, _ = slices.BinarySearchFunc(c.order, *q.cursor, func(j *job, k listCursor) int {
			return compareJobs(j.rec.CreatedAt, j.rec.ID, k.created, k.id)
		})
	}
	for _, j := range c.order[start:] {
		if q.cursor != nil && !q.cursor.after(j) {
			continue
		}
		if q.state != "" && j.rec.State != q.state {
			continue
		}
		if len(out.Jobs) == q.limit {
			last := out.Jobs[len(out.Jobs)-1]
			out.Next = listCursor{created: last.CreatedAt, id: last.ID}.encode()
			break
		}
		st := j.status(now)
		st.Leases = nil // the list stays small; GET /v1/jobs/{id} has them
		out.Jobs = append(out.Jobs, st)
	}
	return out
}
