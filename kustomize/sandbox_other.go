//go:build !linux

package kustomize

import (
	"os"
	"syscall"
)

// sandbox confines a build worker as far as this OS allows without the
// Linux-only mechanisms (rlimits by number, seccomp): HTTP requests are
// refused when remote bases are off. gitopsd runs on Linux; this keeps
// `gitopsd build` usable on a workstation.
func sandbox(opts Options) error {
	if !opts.AllowRemoteBases {
		refuseNetwork()
	}
	return nil
}

func workerProcAttr() *syscall.SysProcAttr { return nil }

func killGroup(pid int) {
	if p, err := os.FindProcess(pid); err == nil {
		_ = p.Kill()
	}
}
