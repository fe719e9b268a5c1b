// Package pgutil holds the PostgreSQL wiring every role shares: the pool configuration
// (binary results without named prepared statements, bounded pings), and redaction of
// connection strings so that passwords never reach a log line or an error.
package pgutil
