package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/gitopsd/gitopsd/kustomize"
	"github.com/gitopsd/gitopsd/reconciler"
	"github.com/gitopsd/gitopsd/sources/dir"
	"github.com/gitopsd/gitopsd/sources/git"
)

// source adapts sources/git and sources/dir to the reconciler's Source.
type source struct {
	fetch   func(context.Context) (reconciler.Snapshot, error)
	name    string
	watched *dir.Source // set for --dir: its watcher must run
}

func (s *source) Fetch(ctx context.Context) (reconciler.Snapshot, error) { return s.fetch(ctx) }
func (s *source) String() string                                         { return s.name }

// newSource builds the source o names. logger gets the source's own
// records (a repaired git cache); nil discards them, for the commands that
// only validate options.
func newSource(o *options, logger *slog.Logger) (*source, error) {
	switch {
	case o.gitURL != "" && o.dir != "":
		return nil, errors.New("--git-url and --dir exclude each other")
	case o.gitURL != "":
		var auth git.Auth
		if o.gitSecretDir != "" {
			var err error
			if auth, err = git.AuthFromFiles(o.gitSecretDir); err != nil {
				return nil, err
			}
		}
		var keys []string
		for _, f := range o.gitVerifyKeys {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("--git-verify-keys: %w", err)
			}
			keys = append(keys, string(data))
		}
		g, err := git.New(git.Options{URL: o.gitURL, Ref: o.gitRef, CacheDir: o.cacheDir, Auth: auth,
			InsecureSkipHostKeyCheck: o.gitInsecureSkipHostKeyCheck, VerifyKeys: keys, Timeout: o.gitTimeout,
			MaxFetchSize: int64(o.gitMaxFetch), MaxObjectSize: int64(o.gitMaxObject), MaxSnapshotSize: int64(o.gitMaxSnapshot),
			Logger: logger})
		if err != nil {
			return nil, err
		}
		return &source{name: g.String(), fetch: func(ctx context.Context) (reconciler.Snapshot, error) {
			snap, err := g.Fetch(ctx)
			return reconciler.Snapshot{Dir: snap.Dir, Revision: snap.Revision}, err
		}}, nil
	case o.dir != "":
		d, err := dir.New(dir.Options{Path: o.dir})
		if err != nil {
			return nil, err
		}
		return &source{name: d.String(), watched: d, fetch: func(ctx context.Context) (reconciler.Snapshot, error) {
			snap, err := d.Fetch(ctx)
			return reconciler.Snapshot{Dir: snap.Dir, Revision: snap.Revision}, err
		}}, nil
	}
	return nil, errors.New("no source: set --git-url or --dir")
}

// buildFunc renders --path inside a snapshot.
func buildFunc(o *options) reconciler.BuildFunc {
	b := kustomize.NewBuilder(builderOptions(o))
	return func(ctx context.Context, root string) ([]*unstructured.Unstructured, error) {
		res, err := b.Build(ctx, root, o.path)
		if err != nil {
			return nil, err
		}
		return res.Objects, nil
	}
}

// clients are built once per process.
type clients struct {
	config *rest.Config
	cs     kubernetes.Interface
	dyn    dynamic.Interface
	mapper *reconciler.CachedMapper
	reach  *reconciler.APIReachability // nil but in the daemon (set by runDaemon)
}

// wraps wrap the transport of every request, in order (the daemon's
// reachability tracker and Lease fence).
func newClients(o *options, wraps ...func(http.RoundTripper) http.RoundTripper) (*clients, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if o.kubeconfig != "" {
		rules.ExplicitPath = o.kubeconfig
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules,
		&clientcmd.ConfigOverrides{CurrentContext: o.context}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.UserAgent = "gitopsd/" + version()
	// In-flight requests are bounded by the Applier's concurrency and the API
	// server's priority and fairness; a low client-side limit only adds waits.
	cfg.QPS, cfg.Burst = 500, 1000
	for _, w := range wraps {
		cfg.Wrap(w)
	}
	c := &clients{config: cfg}
	if c.cs, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, err
	}
	if c.dyn, err = dynamic.NewForConfig(cfg); err != nil {
		return nil, err
	}
	disco, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	c.mapper = reconciler.NewCachedMapper(restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disco)))
	return c, nil
}

// probeAPI asks the API server whether it is there: any answer to GET
// /readyz but a 5xx (not ready, or a proxy without a server) is yes, even
// a 403 (an account without the right to read it).
func probeAPI(ctx context.Context, cs kubernetes.Interface) error {
	// One attempt: client-go's retry of a refused connection would make
	// the probe wait a second longer than the server is away.
	err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").MaxRetries(0).Do(ctx).Error()
	if se := (*apierrors.StatusError)(nil); errors.As(err, &se) && se.Status().Code < 500 {
		return nil
	}
	return err
}

// newSyncer makes the Syncer of one sync. live, when not nil, is the drift
// Watcher whose caches serve the resyncs' live state.
func newSyncer(o *options, src reconciler.Source, c *clients, live reconciler.LiveCache, mods ...func(*reconciler.SyncOptions)) *reconciler.Syncer {
	applier := reconciler.NewApplier(c.dyn, c.mapper, reconciler.ApplierOptions{
		NoForceConflicts: !o.forceConflicts, Concurrency: o.applyConcurrency, Live: live})
	inv := reconciler.NewInventory(c.cs, o.inventoryNamespace, inventoryName(o, src))
	opts := reconciler.SyncOptions{
		NoPrune: !o.prune, PruneMaxShare: o.pruneMaxShare, HealthTimeout: o.healthTimeout, NoWait: !o.wait,
		OnlyNewRevisions: !o.selfHeal,
	}
	for _, mod := range mods {
		mod(&opts)
	}
	return reconciler.NewSyncer(src, buildFunc(o), applier, inv, opts)
}

// withObserver tells a Syncer's observer (the drift Watcher) what it applies.
func withObserver(obs reconciler.Observer) func(*reconciler.SyncOptions) {
	return func(opts *reconciler.SyncOptions) { opts.Observer = obs }
}

var notDNS = regexp.MustCompile(`[^a-z0-9-]+`)

// inventoryName is the ApplySet parent's name: --name, else the path and a
// short hash of source and path, so that two sources deploying the same path
// never share an inventory (and never prune each other's objects).
func inventoryName(o *options, src reconciler.Source) string {
	if o.name != "" {
		return "gitopsd-" + dnsLabel(o.name)
	}
	sum := sha256.Sum256([]byte(src.String() + "\x00" + filepath.Clean(o.path)))
	name := dnsLabel(filepath.Clean(o.path))
	if name == "" {
		name = "root"
	}
	return fmt.Sprintf("gitopsd-%.40s-%x", name, sum[:4])
}

func dnsLabel(s string) string {
	return strings.Trim(notDNS.ReplaceAllString(strings.ToLower(s), "-"), "-")
}
