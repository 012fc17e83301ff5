package kustomize

import (
	"os"
	"testing"
)

// TestMain lets the test binary serve as the build worker: Builders in
// these tests re-execute it with WorkerArg, as gitopsd re-executes itself.
func TestMain(m *testing.M) {
	if len(os.Args) == 2 && os.Args[1] == WorkerArg {
		os.Exit(ServeWorker(os.Stdin, os.Stdout, os.Stderr))
	}
	// See TestSandboxRefusesSocketsAndExec.
	if len(os.Args) == 4 && os.Args[1] == sandboxProbeArg {
		os.Exit(sandboxProbe(os.Args[2] == "sandbox", os.Args[3]))
	}
	os.Exit(m.Run())
}
