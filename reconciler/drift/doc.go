// Package drift holds gitopsd's drift checks and its alert book.
//
// The checks are pure: each takes a Snapshot of observed objects (the live
// state of what git declares, the Pods and PVCs of the managed namespaces,
// PersistentVolumes and StorageClasses) and returns Findings, one per
// problem, with a code from DESIGN.md, the affected object, a one-sentence
// detail and the code's own keys. Nothing here talks to the API server,
// starts a goroutine or reads the clock: time comes in as Snapshot.Now, so
// every check is table-tested.
//
// The Book turns successive sets of findings into what a person wants to
// read: one "detected" once a finding has lasted its grace period, a
// "reminder" every so often while it lasts, and one "resolved" when it is
// gone.
package drift
