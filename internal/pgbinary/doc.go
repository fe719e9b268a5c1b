// Package pgbinary decodes PostgreSQL's binary wire forms of the column types pgtrain turns
// into numbers besides the plain numeric ones: boolean, date, timestamp, timestamptz and
// one-dimensional float4/float8 arrays. The planner's statistics and the fetchers decode
// through it, so both see the same numbers.
package pgbinary
