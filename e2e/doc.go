// Package e2e holds the end-to-end tests: whole jobs through every role, on a real
// PostgreSQL and a real JetStream, checked against what SQL says about the table.
package e2e
