package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

type probeOpts struct {
	timeout time.Duration
}

func probeFlags() (*flag.FlagSet, *probeOpts) {
	o := &probeOpts{}
	fs := newFlagSet("probe", "probe [flags] URL")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "give up on the URL after this long")
	return fs, o
}

// runProbe GETs a role's /healthz or /readyz and exits 0 on a 2xx answer, 1 otherwise: the
// image has no curl or wget, so container healthchecks call the binary itself.
func runProbe(ctx context.Context, args []string) error {
	fs, o := probeFlags()
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("pgtrain probe takes one URL, got %d arguments", fs.NArg())
	}
	if o.timeout <= 0 {
		return usagef("--timeout must be positive, got %s", o.timeout)
	}
	u, err := url.Parse(fs.Arg(0))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usagef("URL %q: want http://host:port/path", fs.Arg(0))
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return usageError{err}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// The probes answer a few bytes of JSON: show at most a line of it.
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %s %s", u.Redacted(), resp.Status, body)
	}
	return nil
}
