package client_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"pgtrain/coordinator/client"
	"pgtrain/messages"
)

// A fetcher's loop: lease a range, report progress as pages are published, complete it.
func Example() {
	ctx := context.Background()
	c := client.New("http://127.0.0.1:8080", slog.Default())
	lease, err := c.Lease(ctx, "fetcher-1")
	if err != nil || lease == nil {
		return // no work now (nil lease) or the coordinator is unreachable
	}
	// ... publish pages from lease.NextPage on, after lease.LastKey ...
	_, err = c.ReportLease(ctx, lease.ID, messages.LeaseProgress{WorkerID: "fetcher-1", NextPage: 3, LastKey: 42, Done: true})
	if errors.Is(err, client.ErrLeaseLost) {
		fmt.Println("the range went to another fetcher; stop working on it")
	}
}

// Submitting a job: a bad spec comes back as an *APIError naming the field.
func ExampleClient_Submit() {
	ctx := context.Background()
	c := client.New("http://127.0.0.1:8080", nil)
	st, err := c.Submit(ctx, []byte(`{"table": "iris", "key": "id", "features": ["..."]}`))
	var apiErr *client.APIError
	switch {
	case errors.As(err, &apiErr):
		fmt.Println("rejected:", apiErr.Field, apiErr.Message)
	case err != nil:
		fmt.Println("coordinator unreachable:", err)
	default:
		fmt.Println("job", st.ID, st.State)
	}
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
