// Command gitopsd keeps a Kubernetes cluster equal to a git repository of
// kustomize overlays. main only wires: flags into options, clients built
// once, then the command runs.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/gitopsd/gitopsd/kustomize"
)

func main() {
	// A build worker is this binary re-executed: it serves one build and
	// exits, before any flag, signal handler or client exists.
	if len(os.Args) == 2 && os.Args[1] == kustomize.WorkerArg {
		os.Exit(kustomize.ServeWorker(os.Stdin, os.Stdout, os.Stderr))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	var exit exitError
	switch {
	case errors.As(err, &exit):
		os.Exit(int(exit))
	case err != nil:
		fmt.Fprintln(os.Stderr, "gitopsd:", err)
		os.Exit(1)
	}
}

// exitError ends the process with a code and no message: the command has
// already said what it had to (`diff` exits 1 when something would change).
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// run executes one gitopsd command line.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newRootCommand(stdout, stderr)
	cmd.SetArgs(args)
	return cmd.ExecuteContext(ctx)
}
