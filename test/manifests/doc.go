// Package manifests builds the repository's kustomize overlays for the
// end-to-end tests with the daemon's own build stage (package kustomize), and
// checks in its unit tests that base/ and overlays/ hold the stack of the
// user's walkthrough: the StorageClass exactly as written there, replicas per
// overlay, recommended labels, pinned image tags, the claim templates.
package manifests
