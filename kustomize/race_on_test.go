//go:build race

package kustomize

// raceEnabled is whether the tests run with the race detector, which makes
// every build worker (this test binary) several times slower to start and
// to run: time bounds that are not build limits scale with it.
const raceEnabled = true
