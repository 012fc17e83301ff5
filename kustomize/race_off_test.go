//go:build !race

package kustomize

// raceEnabled: see race_on_test.go.
const raceEnabled = false
