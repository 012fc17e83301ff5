// Package dir serves a plain local directory as gitopsd's source of desired
// state: `gitopsd run --dir PATH`.
//
// It sits at the head of the flow in DESIGN.md, beside sources/git:
//
//	source -> snapshot (dir + revision) -> kustomize build -> apply -> prune -> health
//
// A [Source] answers [Source.Fetch] with a [Snapshot]: the directory with
// every symlink resolved, and a revision that is a hash of the tree's
// content. Because the revision hashes content rather than timestamps, a
// touch that changes nothing gives the same revision and the reconciler has
// nothing to do. [Source.Dir] resolves the directory alone, for a one-shot
// build that needs no revision.
//
// The revision covers what a commit of the tree would hold: every entry
// but .git and what the tree's .gitignore files ignore, read as git reads
// them, each applying to its directory and below. An ignored directory is
// not even listed, so a dataset or build output beside the manifests costs
// nothing and counts toward neither MaxFiles nor MaxBytes. A Source keeps
// the hash of each file with the file's stat, and a later Fetch reads only
// the files whose stat changed: a Fetch of an unchanged tree lists its
// directories and reads nothing. As git does against the "racy git"
// problem, a file changed within two seconds of a Fetch is read again by
// the next one, whatever its stat.
//
// [Source.Run] watches the tree with fsnotify and wakes the reconciler
// through [Source.Changed], once per burst of changes. Path may be a symlink
// that another program swaps atomically, as git-sync publishes
// /git/current -> /git/.worktrees/<sha>; the swap is watched and the new
// target tree is watched from then on.
//
// The package reads the tree and reports data; it logs nothing and never
// talks to the cluster.
package dir
