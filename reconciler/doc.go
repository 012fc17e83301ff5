// Package reconciler is the loop of gitopsd: it takes a snapshot from a
// Source, renders it (kustomize), validates the whole set by server-side
// dry-run, server-side applies what would change (field manager gitopsd),
// prunes what left git under the safety rules of DESIGN.md, records the
// inventory in an ApplySet parent, and waits for changed workloads to be
// healthy (kstatus).
//
// The pure parts (prune planning, stages, health verdicts) take values and
// return values; only this package talks to the API server.
package reconciler
