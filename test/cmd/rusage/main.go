// Command rusage runs a command and writes its wall time, peak RSS and CPU
// time as JSON to a file: `rusage OUT CMD ARGS...`. make bench measures each
// tool through it.
//
// Why not measure from the bench itself: Go starts a child with vfork, so
// the child shares the bench's memory until exec, and Linux folds that
// shared memory's high-water mark into the child's ru_maxrss. A child's
// peak RSS read by the bench is at least the bench's own RSS. This program
// is small, so what it passes on is far below any tool's peak.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"
)

// Usage is what the file holds.
type Usage struct {
	WallNanos int64 `json:"wallNanos"`
	CPUNanos  int64 `json:"cpuNanos"` // user + system
	MaxRSSKiB int64 `json:"maxRSSKiB"`
	ExitCode  int   `json:"exitCode"`
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: rusage OUT CMD [ARGS...]")
		os.Exit(2)
	}
	os.Exit(run(os.Args[1], os.Args[2:]))
}

func run(out string, argv []string) int {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, os.Interrupt)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "rusage:", err)
		return 127
	}
	go func() {
		for s := range signals {
			_ = cmd.Process.Signal(s) // passed on: a daemon is stopped through rusage
		}
	}()
	err := cmd.Wait()
	u := Usage{WallNanos: int64(time.Since(start)), ExitCode: cmd.ProcessState.ExitCode(),
		CPUNanos: int64(cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime())}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		u.MaxRSSKiB = ru.Maxrss
	}
	data, _ := json.Marshal(u)
	if werr := os.WriteFile(out, data, 0o644); werr != nil {
		fmt.Fprintln(os.Stderr, "rusage:", werr)
		return 126
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		fmt.Fprintln(os.Stderr, "rusage:", err)
		return 126
	}
	return u.ExitCode
}
