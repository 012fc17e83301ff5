package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"time"

	"github.com/gitopsd/gitopsd/kustomize"
)

// buildRuns is how many builds of each kind buildBench times (after one
// untimed build each); the median is reported.
const buildRuns = 9

// buildPause is the idle time between two timed builds. A daemon builds
// when a commit arrives, seconds or minutes apart, and starts the next
// build's worker in between (kustomize's spare worker); the pause lets the
// benchmark measure that case rather than back-to-back builds, which find
// the spare still starting and pay up to its start-up.
const buildPause = 300 * time.Millisecond

// buildBench measures what build isolation costs: the same kustomization
// built in this process (kustomize warm, as a daemon without isolation
// would) and in a worker (gitopsd re-executed, sandboxed, as the daemon
// does), for the MySQL stack and 1,000 objects. The two kinds alternate, so
// that a change in the machine's speed during the run weighs on both. The
// difference is the request and the transfer of the result, the sandbox,
// and whatever the worker's start-up did not warm.
func buildBench(ctx context.Context, w io.Writer, root, work, gitopsd string) error {
	fmt.Fprintf(w, "build isolation: median of %d builds each, in-process vs in a worker, %s apart\n\n", buildRuns, buildPause)
	fmt.Fprintf(w, "%-36s %12s %12s %10s\n", "case", "in-process", "worker", "overhead")
	for _, tc := range []struct {
		name string
		make func(dir string) error
	}{
		{"MySQL stack (overlays/dev)", func(dir string) error { return mysqlStack(root, dir, "bench-build") }},
		{"1,000 objects", func(dir string) error { return generated(dir, "bench-build", 1000) }},
	} {
		dir := filepath.Join(work, fmt.Sprintf("build-%d", len(tc.name)))
		if err := tc.make(dir); err != nil {
			return err
		}
		builders := []*kustomize.Builder{
			kustomize.NewBuilder(kustomize.Options{InProcess: true}),
			kustomize.NewBuilder(kustomize.Options{WorkerExecutable: gitopsd, SpareWorker: true}),
		}
		times := make([][]time.Duration, len(builders))
		for i := -1; i < buildRuns; i++ {
			for k, b := range builders {
				if err := pause(ctx, buildPause); err != nil {
					return err
				}
				start := time.Now()
				if _, err := b.Build(ctx, dir, "."); err != nil {
					return fmt.Errorf("%s (builder %d): %w", tc.name, k, err)
				}
				if i >= 0 { // the first round is untimed
					times[k] = append(times[k], time.Since(start))
				}
			}
		}
		in, out := medianTime(times[0]), medianTime(times[1])
		fmt.Fprintf(w, "%-36s %12s %12s %10s\n", tc.name, in.Round(time.Millisecond), out.Round(time.Millisecond), (out - in).Round(time.Millisecond))
	}
	fmt.Fprintln(w)
	return nil
}

// medianTime returns the middle of times (sorting it).
func medianTime(times []time.Duration) time.Duration {
	slices.Sort(times)
	return times[len(times)/2]
}
