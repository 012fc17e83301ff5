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

	"github.com/prometheus/client_golang/prometheus"
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
	fs.BoolVar(&o.leaderElect, "leader-elect", false, "run as one of several replicas: only the holder of a Lease syncs, heals and alerts")
	fs.StringVar(&o.leaderElectionNamespace, "leader-election-namespace", "gitopsd", "namespace of the leader-election Lease")
	fs.StringVar(&o.leaderElectionID, "leader-election-id", "gitopsd", "name of the leader-election Lease")
	fs.StringVar(&o.configFile, "config", "", "a YAML file of one or more syncs (name, gitURL or dir, gitRef, gitSecretDir, path, interval, prune, selfHeal, wait, healthTimeout; the flags are the defaults), reloaded when it changes")
	fs.StringVar(&o.webhookSecretFile, "webhook-secret-file", "", "file holding the secret of GitHub (HMAC) and GitLab (token) push webhooks; enables POST /hooks/github and /hooks/gitlab")
	fs.StringVar(&o.httpAddr, "http-addr", ":8080", "address of /healthz, /readyz, /metrics, /status and the status page (empty: off)")
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
	specs := []*options{o}
	if o.configFile != "" {
		if specs, err = loadConfig(o.configFile, o); err != nil {
			return err
		}
	} else if _, err := newSource(o, nil); err != nil {
		return err
	}
	// The API server's outages are followed from every request (one record
	// when it goes, one when it is back), and client-go's own complaints
	// meanwhile (a watch that retries, an Event not written) are DEBUG.
	var c *clients
	reach := reconciler.NewAPIReachability(reconciler.APIReachabilityOptions{
		Logger: logger, Probe: func(ctx context.Context) error { return probeAPI(ctx, c.cs) }})
	fence := &fence{elect: o.leaderElect}
	if c, err = newClients(o, reach.WrapTransport, fence.wrapTransport); err != nil {
		return err
	}
	c.reach = reach
	klog.SetSlogLogger(slog.New(quietWhile(logger.Handler(), reach.Suspect)))
	if o.once {
		return syncAllOnce(ctx, specs, c, logger)
	}
	reg, metrics := newRegistry()
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "gitopsd_api_server_reachable",
		Help: "1 while the API server answers, 0 while it is known not to (see the \"API server unreachable\" record).",
	}, func() float64 {
		if reach.Down() {
			return 0
		}
		return 1
	}))
	m := &manager{c: c, metrics: metrics, logger: logger, running: map[string]*runningSync{}}
	if o.events {
		broadcaster := record.NewBroadcaster(record.WithContext(ctx))
		broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.cs.CoreV1().Events("")})
		defer broadcaster.Shutdown()
		m.events = broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "gitopsd"})
	}
	g, ctx := errgroup.WithContext(ctx)
	state := &leading{}
	if o.httpAddr != "" {
		status := &statusServer{reg: reg, logger: logger, leading: state, syncs: m.views, api: reach}
		if o.webhookSecretFile != "" {
			if status.hooks, err = newHooks(o.webhookSecretFile, m.views, logger); err != nil {
				return err
			}
		}
		g.Go(func() error { return serveHTTP(ctx, o.httpAddr, status.handler(), logger) })
	}
	// Only the leader syncs, heals and alerts; a standby serves its
	// endpoints and waits.
	g.Go(func() error {
		return runLeader(ctx, o, c.cs, state, fence, logger, func(ctx context.Context) error {
			defer m.stopAll()
			m.apply(ctx, specs)
			if o.configFile != "" {
				return watchConfig(ctx, o.configFile, o, logger, func(specs []*options) { m.apply(ctx, specs) })
			}
			<-ctx.Done()
			return nil
		})
	})
	g.Go(func() error { return forwardSIGHUP(ctx, m.triggerAll) })
	logger.Info("gitopsd started", "syncs", len(specs), "config", o.configFile, "version", version())
	err = g.Wait()
	logger.Info("gitopsd stopped")
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// forwardSIGHUP turns SIGHUP into an immediate sync, as operators expect.
func forwardSIGHUP(ctx context.Context, trigger func()) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			trigger()
		}
	}
}

// syncAllOnce is --once: one sync of each, in order; the first failure
// ends it with exit code 1.
func syncAllOnce(ctx context.Context, specs []*options, c *clients, logger *slog.Logger) error {
	for _, o := range specs {
		src, err := newSource(o, logger)
		if err != nil {
			return err
		}
		res, err := newSyncer(o, src, c, nil).Sync(ctx)
		if err != nil {
			reconciler.LogSync(ctx, logger, slog.LevelError, o.path, res, err)
			return exitError(1)
		}
		reconciler.LogSync(ctx, logger, slog.LevelInfo, o.path, res, nil)
	}
	return nil
}
