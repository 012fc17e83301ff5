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

// buildBench measures what build isolation costs: the same kustomization
// built in this process (kustomize warm, as a daemon without isolation
// would) and in a worker (gitopsd re-executed, sandboxed, as the daemon
// does), for the MySQL stack and 1,000 objects. The difference is the
// worker's start-up, its kustomize initialisation and the transfer of the
// result.
func buildBench(ctx context.Context, w io.Writer, root, work, gitopsd string) error {
	fmt.Fprintf(w, "build isolation: median of %d builds each, in-process vs in a worker\n\n", buildRuns)
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
		in, err := timeBuilds(ctx, kustomize.NewBuilder(kustomize.Options{InProcess: true}), dir)
		if err != nil {
			return fmt.Errorf("%s in-process: %w", tc.name, err)
		}
		out, err := timeBuilds(ctx, kustomize.NewBuilder(kustomize.Options{WorkerExecutable: gitopsd}), dir)
		if err != nil {
			return fmt.Errorf("%s in a worker: %w", tc.name, err)
		}
		fmt.Fprintf(w, "%-36s %12s %12s %10s\n", tc.name, in.Round(time.Millisecond), out.Round(time.Millisecond), (out - in).Round(time.Millisecond))
	}
	fmt.Fprintln(w)
	return nil
}

// timeBuilds returns the median time of buildRuns builds of dir.
func timeBuilds(ctx context.Context, b *kustomize.Builder, dir string) (time.Duration, error) {
	if _, err := b.Build(ctx, dir, "."); err != nil {
		return 0, err
	}
	times := make([]time.Duration, buildRuns)
	for i := range times {
		start := time.Now()
		if _, err := b.Build(ctx, dir, "."); err != nil {
			return 0, err
		}
		times[i] = time.Since(start)
	}
	slices.Sort(times)
	return times[len(times)/2], nil
}
