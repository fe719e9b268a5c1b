// Package security replays attacks on a coordinator run the way it runs in production: a
// real process of the pgtrain binary, with bearer tokens and TLS, next to real fetcher,
// preprocessor and trainer processes, a real PostgreSQL and a real JetStream.
//
// TestMain builds the binary from this tree, starts PostgreSQL and NATS, creates a small
// table and starts the cluster once. TestAttacks then sends every case of the attacks
// table to the coordinator and checks its answer; after each case the coordinator must still
// be the same process and answer /healthz. When every case is done, a normal job must run
// to the end, and no log may contain a token.
//
// To add a case, append to attacks (attacks_test.go): a plain request with the token to
// send and the status wanted, or a run function for anything more involved.
package security
