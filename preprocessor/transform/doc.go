// Package transform turns a raw page (columnar float64, float32 and text columns, with NULLs)
// into a ready batch (a dense row-major float32 feature matrix and its labels) as the job's
// plan says: imputation, scaling and one-hot encoding of features, and the label's
// encoding. It is pure (no I/O), so it is tested on its own and fuzzed.
//
// Compile checks a plan once and builds the lookup tables; Transformer.Apply then runs
// without per-row allocations. Apply is the one-call form.
package transform
