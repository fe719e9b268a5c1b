// Package dashboard holds the coordinator's web dashboard: static HTML, CSS and JavaScript
// embedded in the binary (no build step, nothing loaded from elsewhere). The page shows the
// jobs with their state and progress, the selected job's loss and validation curves per
// epoch, its key ranges coloured by state with the fetcher that holds each, the throughput
// and how full the bus is.
//
// The files hold no data, so they are served without a token. Everything the page shows it
// reads from the coordinator's JSON API with the user's bearer token, which the page asks
// for once, or takes from the URL fragment (/ui/#token=...): a fragment never reaches the
// server or its logs, unlike a query string.
package dashboard
