// Package drift holds gitopsd's drift checks and its alert book: the pure
// core of the observed-state half of the flow in DESIGN.md (watches ->
// drift checks -> alert book -> logs, Events, metrics).
//
// The checks are pure: each takes a Snapshot of observed objects (the live
// state of what git declares, the Pods and PVCs of the managed namespaces,
// PersistentVolumes and StorageClasses) and returns Findings, one per
// problem, with a code from DESIGN.md's table (object-drift, pod-missing,
// pvc-orphaned, ...), the affected object, a one-sentence detail and the
// code's own log keys. Nothing here talks to the API server, starts a
// goroutine or reads the clock: time comes in as Snapshot.Now, so every
// check is table-tested. Check runs them all.
//
// The Book turns successive sets of findings into what a person wants to
// read: one "detected" once a finding has lasted its grace period, a
// "reminder" every so often while it lasts, and one "resolved" when it is
// gone, never one per loop. reconciler.Watcher builds the snapshots from
// its informer caches, feeds the book and logs its events as
// msg="drift detected" and msg="drift resolved".
//
// Secret values never leave this package: object-drift on a Secret's data
// names the key and shows "(redacted)" for both values.
package drift
