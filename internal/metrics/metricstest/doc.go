// Package metricstest scrapes a role's real /metrics endpoint in tests, checks the answer
// with promtool (Debian's prometheus package) and reads values out of it.
package metricstest
