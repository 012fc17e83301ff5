// Package git is the git source of gitopsd: the first stage of the flow
// (source -> snapshot -> kustomize build -> apply). It keeps a shallow bare
// clone of a repository in a cache directory, follows one ref (a branch, a
// tag, the highest tag in a semver range, or a commit) and publishes each
// revision it sees as an immutable plain directory, <CacheDir>/snapshots/<sha>,
// which the kustomize stage builds from.
//
// A Source satisfies the reconciler's source interface: Fetch returns a
// Snapshot (directory and Flux-style revision such as "main@sha1:<hex>") and
// String a description safe to log. Each Fetch first lists the remote's refs
// and skips the fetch when the wanted commit is already published; branches
// are force-fetched so a rewritten history is followed. Credentials come
// from Auth (see AuthFromFiles); they never appear in errors, String or log
// values, and ssh requires known_hosts unless explicitly opted out.
//
// The package never imports client-go. It returns data and errors for the
// reconciler to report; an optional Logger gets DEBUG detail and a WARN when
// an old snapshot cannot be removed.
package git
