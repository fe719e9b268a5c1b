package client_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/coordinator"
	"pgtrain/coordinator/client"
	"pgtrain/internal/bus"
	"pgtrain/internal/pgutil"
	"pgtrain/internal/testenv"
	"pgtrain/messages"
)

const irisSpec = `{
	"table": "iris", "key": "id",
	"features": [{"column": "sepal", "scale": "standard"}],
	"label": {"column": "species", "encode": "onehot"},
	"model": {"layers": [{"type": "dense", "units": 3, "activation": "softmax"}]},
	"loss": "categorical_crossentropy", "epochs": 1, "range_rows": 50}`

// A fetcher's loop: lease a range, report progress as pages are published, complete it.
func Example() {
	url, stop, err := startCoordinator()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	ctx := context.Background()
	c := client.New(url, slog.New(slog.DiscardHandler))
	if _, err := c.Submit(ctx, []byte(irisSpec)); err != nil {
		fmt.Println(err)
		return
	}
	lease, err := c.Lease(ctx, "fetcher-1")
	if err != nil || lease == nil {
		fmt.Println("no work now:", err) // a nil lease: every range is taken or done
		return
	}
	fmt.Printf("range %d: %d rows, from page %d\n", lease.Range.Index, lease.Range.Rows, lease.NextPage)
	// ... publish the pages from lease.NextPage on, after lease.LastKey ...
	_, err = c.ReportLease(ctx, lease.ID, messages.LeaseProgress{
		WorkerID: "fetcher-1", NextPage: 1, LastKey: lease.Range.Hi, Rows: lease.Range.Rows, Done: true})
	switch {
	case errors.Is(err, client.ErrLeaseLost):
		fmt.Println("the range went to another fetcher; stop working on it")
	case err != nil:
		fmt.Println(err)
	default:
		fmt.Println("range done")
	}
	// Output:
	// range 0: 50 rows, from page 0
	// range done
}

// Submitting a job: a bad spec comes back as an *APIError naming the field.
func ExampleClient_Submit() {
	url, stop, err := startCoordinator()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	ctx := context.Background()
	c := client.New(url, nil)
	noSuchColumn := strings.Replace(irisSpec, `"sepal"`, `"petal"`, 1)
	for _, spec := range []string{noSuchColumn, irisSpec} {
		st, err := c.Submit(ctx, []byte(spec))
		var apiErr *client.APIError
		switch {
		case errors.As(err, &apiErr):
			fmt.Println("rejected:", apiErr.Field, apiErr.Message)
		case err != nil:
			fmt.Println("coordinator unreachable:", err)
		default:
			fmt.Println("job", st.State, "on", st.Table, "with", st.Rows, "rows in", st.Ranges, "range(s)")
		}
	}
	// Output:
	// rejected: features[0].column no column "petal" in public.iris
	// job running on public.iris with 150 rows in 3 range(s)
}

// Job control: cancel a running job, list the cancelled ones a page at a time, delete one
// (a running job cannot be deleted: cancel it first).
func ExampleClient_Cancel() {
	url, stop, err := startCoordinator()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	ctx := context.Background()
	c := client.New(url, nil)
	st, err := c.Submit(ctx, []byte(irisSpec))
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := c.Delete(ctx, st.ID); errors.Is(err, client.ErrConflict) {
		fmt.Println("refused: the job is", client.JobState(err))
	}
	if st, err = c.Cancel(ctx, st.ID); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("job", st.State)
	for q := (client.ListQuery{State: messages.JobCancelled, Limit: 10}); ; {
		page, err := c.JobsPage(ctx, q)
		if err != nil {
			fmt.Println(err)
			return
		}
		for _, j := range page.Jobs {
			fmt.Println("listed:", j.State, j.Table)
		}
		if page.Next == "" {
			break
		}
		q.Cursor = page.Next
	}
	if err := c.Delete(ctx, st.ID); err != nil {
		fmt.Println(err)
		return
	}
	_, err = c.Job(ctx, st.ID)
	fmt.Println("after the delete:", errors.Is(err, client.ErrNotFound))
	// Output:
	// refused: the job is running
	// job cancelled
	// listed: cancelled public.iris
	// after the delete: true
}

// startCoordinator runs a coordinator on a throwaway PostgreSQL holding a small iris table
// and an embedded NATS server; stop shuts it all down.
func startCoordinator() (url string, stop func(), err error) {
	srv, err := testenv.StartServers(context.Background())
	if err != nil {
		return "", nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var cleanups []func()
	stop = func() {
		cancel()
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
		srv.Stop()
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	log := slog.New(slog.DiscardHandler)
	pool, err := pgutil.NewPool(ctx, srv.DSN, 0)
	if err != nil {
		return "", nil, err
	}
	cleanups = append(cleanups, pool.Close)
	if _, err := pool.Exec(ctx, `create table iris (id bigint primary key, sepal float8, species text);
insert into iris select i, i % 10, (array['setosa', 'versicolor', 'virginica'])[i % 3 + 1]
from generate_series(1, 150) i`); err != nil {
		return "", nil, err
	}
	nc, err := bus.Connect(srv.NATSURL, "pgtrain-example", log)
	if err != nil {
		return "", nil, err
	}
	cleanups = append(cleanups, nc.Close)
	b, err := bus.Ensure(ctx, nc, bus.Limits{})
	if err != nil {
		return "", nil, err
	}
	c, err := coordinator.New(ctx, coordinator.Config{Listen: "127.0.0.1:0"}, map[string]*pgxpool.Pool{"": pool}, b, log)
	if err != nil {
		return "", nil, err
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	cleanups = append(cleanups, func() { <-done })
	select {
	case <-c.Ready():
	case err = <-done:
		done <- err // for stop's wait
		return "", nil, err
	}
	return "http://" + c.Addr(), stop, nil
}

// A client of a coordinator with tokens and a certificate from a private CA. A 401 (no or
// a wrong token) or 403 (a token without the route's scope) is not retried.
func ExampleWithToken() {
	ctx := context.Background()
	roots := x509.NewCertPool() // in practice: roots.AppendCertsFromPEM(the CA's PEM)
	c := client.New("https://coordinator:8080", nil,
		client.WithToken(os.Getenv("PGTRAIN_COORDINATOR_TOKEN")),
		client.WithTLSConfig(&tls.Config{RootCAs: roots}))
	_, err := c.Jobs(ctx)
	var apiErr *client.APIError
	if errors.As(err, &apiErr) && (apiErr.Status == 401 || apiErr.Status == 403) {
		fmt.Println("not allowed:", apiErr.Message)
	}
}
