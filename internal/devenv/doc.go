// Package devenv starts the throwaway infrastructure that `pgtrain up` and the tests run on:
// a PostgreSQL cluster created with the local server binaries in a temporary directory, and
// an embedded nats-server with JetStream in its own store directory. Both are real servers;
// both are removed when stopped.
package devenv
