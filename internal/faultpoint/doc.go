// Package faultpoint is the testing hook of the fault-injection suite (faults/): a process
// started with PGTRAIN_FAULT="fetcher.after_publish:3" sends itself SIGKILL the 3rd time it
// reaches the point named fetcher.after_publish. It lets a test kill a process at a moment
// that cannot be hit from outside (just after a publish, before the lease update that
// records it), which is where exactly-once bugs hide.
//
// The variable is read once, by Arm in main; when it is unset, Hit costs one load of a nil
// map. The points are listed in Points, so an unknown name in PGTRAIN_FAULT is an error
// instead of a test that never fires.
package faultpoint
