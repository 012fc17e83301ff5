package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/gitopsd/gitopsd/reconciler"
)

func newRunCommand(stdout, stderr io.Writer) *cobra.Command {
	o := &options{}
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the daemon: sync on start, on every new commit and every --interval",
		Example: `  gitopsd run --git-url https://github.com/acme/mysql-stack --git-ref main --path overlays/prod
  gitopsd run --dir ./deploy --path overlays/dev --log-format text
  gitopsd run --git-url file:///srv/git/stack.git --path overlays/dev --once`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd.Flags()); err != nil {
				return err
			}
			return runDaemon(cmd.Context(), o, stderr)
		},
	}
	fs := cmd.Flags()
	sourceFlags(fs, o)
	clusterFlags(fs, o)
	logFlags(fs, o)
	fs.DurationVar(&o.interval, "interval", time.Minute, "how often to poll the source and fully resync")
	fs.BoolVar(&o.once, "once", false, "sync once and exit: 0 on success, 1 with the \"sync failed\" record otherwise")
	fs.BoolVar(&o.prune, "prune", true, "delete objects that left git (never PersistentVolumes, PersistentVolumeClaims or Namespaces)")
	fs.Float64Var(&o.pruneMaxShare, "prune-max-share", 0.5, "refuse a prune that would delete more than this share of the inventory at once")
	fs.BoolVar(&o.forceConflicts, "force-conflicts", true, "take over fields another field manager owns (set false to fail instead)")
	fs.IntVar(&o.applyConcurrency, "apply-concurrency", 8, "requests in flight at once during validation and apply")
	fs.DurationVar(&o.healthTimeout, "health-timeout", 5*time.Minute, "how long to wait for changed workloads to become healthy")
	fs.BoolVar(&o.wait, "wait", true, "wait for changed workloads to become healthy before a sync counts as complete")
	driftFlags(fs, &o.drift)
	fs.BoolVar(&o.selfHeal, "self-heal", true, "re-apply git's state as soon as a managed object drifts or goes missing (false: only alert, and only new commits are applied)")
	fs.BoolVar(&o.enforceReclaimPolicy, "enforce-reclaim-policy", false, "patch a managed PersistentVolume back to its StorageClass's reclaim policy")
	fs.DurationVar(&o.driftRemind, "drift-remind", time.Hour, "how often an unresolved drift is logged again (0: never)")
	fs.BoolVar(&o.events, "events", true, "record drift as Kubernetes Events on the affected objects")
	return cmd
}

func runDaemon(ctx context.Context, o *options, stderr io.Writer) error {
	logger, err := newLogger(stderr, o.logFormat, o.logLevel)
	if err != nil {
		return err
	}
	// client-go's own messages (a watch that failed and retries) go to the
	// same structured stream instead of klog's text lines.
	klog.SetSlogLogger(logger)
	src, err := newSource(o)
	if err != nil {
		return err
	}
	c, err := newClients(o)
	if err != nil {
		return err
	}
	if o.once {
		return syncOnce(ctx, o, newSyncer(o, src, c), logger)
	}
	var loop *reconciler.Loop
	wopts := reconciler.WatcherOptions{Logger: logger, Drift: o.drift.checks(), Remind: o.driftRemind,
		SelfHeal: o.selfHeal, Heal: func() { loop.Trigger() }, EnforceReclaimPolicy: o.enforceReclaimPolicy}
	if o.events {
		broadcaster := record.NewBroadcaster(record.WithContext(ctx))
		broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.cs.CoreV1().Events("")})
		defer broadcaster.Shutdown()
		wopts.Events = broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "gitopsd"})
	}
	watcher := reconciler.NewWatcher(c.cs, c.dyn, c.mapper, wopts)
	syncer := newSyncer(o, src, c, withObserver(watcher))
	var changed <-chan struct{}
	g, ctx := errgroup.WithContext(ctx)
	if src.watched != nil {
		changed = src.watched.Changed()
		g.Go(func() error { return src.watched.Run(ctx) })
	}
	loop = reconciler.NewLoop(syncer, reconciler.LoopOptions{Interval: o.interval, Path: o.path, Logger: logger, Changed: changed})
	g.Go(func() error { return watcher.Run(ctx) })
	g.Go(func() error { return loop.Run(ctx) })
	g.Go(func() error { return forwardSIGHUP(ctx, loop) })
	logger.Info("gitopsd started", "source", src.String(), "path", o.path, "interval", o.interval.String(), "version", version())
	err = g.Wait()
	logger.Info("gitopsd stopped", "lastApplied", loop.LastApplied())
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// forwardSIGHUP turns SIGHUP into an immediate sync, as operators expect.
func forwardSIGHUP(ctx context.Context, loop *reconciler.Loop) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			loop.Trigger()
		}
	}
}

func syncOnce(ctx context.Context, o *options, syncer *reconciler.Syncer, logger *slog.Logger) error {
	res, err := syncer.Sync(ctx)
	if err != nil {
		reconciler.LogSync(ctx, logger, slog.LevelError, o.path, res, err)
		return exitError(1)
	}
	reconciler.LogSync(ctx, logger, slog.LevelInfo, o.path, res, nil)
	return nil
}
