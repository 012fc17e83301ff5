// Package manifests builds the repository's kustomize overlays in-process for
// the end-to-end tests, and checks in its own unit tests that base/ and
// overlays/ hold the stack from the user's walkthrough.
//
// It is a test helper, not the daemon's build stage: it reads the real file
// system, runs no plugins, and returns the objects sorted into a fixed
// apply order by kind. The product's own kustomize package comes later.
package manifests
