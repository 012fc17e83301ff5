package main

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/gitopsd/gitopsd/reconciler"
)

// manager runs the syncs of the daemon (one per --config entry, or the one
// the flags describe) and replaces them when the config changes.
type manager struct {
	c       *clients
	metrics *reconciler.Metrics
	logger  *slog.Logger
	events  record.EventRecorder

	mu      sync.Mutex
	running map[string]*runningSync // by options.name, or "" for flags alone
}

type runningSync struct {
	opts   *options
	view   syncView
	cancel context.CancelFunc
	done   chan struct{}
}

// apply makes the running syncs those of specs: unchanged ones keep
// running, changed ones restart, removed ones stop.
func (m *manager) apply(ctx context.Context, specs []*options) {
	m.mu.Lock()
	defer m.mu.Unlock()
	want := map[string]*options{}
	for _, o := range specs {
		want[o.name] = o
	}
	for key, r := range m.running {
		if o, ok := want[key]; !ok || !reflect.DeepEqual(o, r.opts) {
			r.cancel()
			<-r.done
			delete(m.running, key)
			m.logger.Info("sync stopped", "sync", r.view.name)
		}
	}
	for _, o := range specs {
		if m.running[o.name] != nil {
			continue
		}
		r, err := m.start(ctx, o)
		if err != nil {
			m.logger.Error("sync not started", "sync", o.name, "error", err.Error())
			continue
		}
		m.running[o.name] = r
		m.logger.Info("sync started", "sync", r.view.name, "source", r.view.source, "path", o.path, "interval", o.interval.String())
	}
}

func (m *manager) start(ctx context.Context, o *options) (*runningSync, error) {
	src, err := newSource(o, m.logger)
	if err != nil {
		return nil, err
	}
	name := inventoryName(o, src)
	logger := m.logger.With("sync", name)
	var loop *reconciler.Loop
	watcher := reconciler.NewWatcher(m.c.cs, m.c.dyn, m.c.mapper, reconciler.WatcherOptions{
		Logger: logger, Drift: o.drift.checks(), Remind: o.driftRemind, SelfHeal: o.selfHeal,
		Heal: func() { loop.Heal() }, EnforceReclaimPolicy: o.enforceReclaimPolicy,
		Events: m.events, Metrics: m.metrics, Name: name})
	var changed <-chan struct{}
	if src.watched != nil {
		changed = src.watched.Changed()
	}
	// A daemon builds again at the next commit: its builds keep a spare
	// worker started (a copy, so that o stays what the user configured).
	daemon := *o
	daemon.build.spare = true
	loop = reconciler.NewLoop(newSyncer(&daemon, src, m.c, watcher, withObserver(watcher)), reconciler.LoopOptions{
		Interval: o.interval, Path: o.path, Logger: logger, Changed: changed, Metrics: m.metrics, Name: name, API: m.c.reach,
		OnSync: m.syncEvents(o.inventoryNamespace, name)})
	ctx, cancel := context.WithCancel(ctx)
	r := &runningSync{opts: o, cancel: cancel, done: make(chan struct{}),
		view: syncView{name: name, source: src.String(), path: o.path, gitURL: o.gitURL, loop: loop, watcher: watcher,
			stuckAfter: stuckAfter(o)}}
	go func() {
		defer close(r.done)
		g, ctx := errgroup.WithContext(ctx)
		if src.watched != nil {
			g.Go(func() error { return src.watched.Run(ctx) })
		}
		g.Go(func() error { return watcher.Run(ctx) })
		g.Go(func() error { return loop.Run(ctx) })
		if err := g.Wait(); err != nil && ctx.Err() == nil {
			m.logger.Error("sync ended", "sync", name, "error", err.Error())
		}
	}()
	return r, nil
}

// views lists the running syncs, in name order.
func (m *manager) views() []syncView {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []syncView
	for _, key := range slices.Sorted(maps.Keys(m.running)) {
		out = append(out, m.running[key].view)
	}
	return out
}

// triggerAll asks every sync for a sync now (SIGHUP).
func (m *manager) triggerAll() {
	for _, v := range m.views() {
		v.loop.Trigger()
	}
}

// stopAll stops every sync and waits for them.
func (m *manager) stopAll() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for key, r := range m.running {
		r.cancel()
		<-r.done
		delete(m.running, key)
	}
}

// syncEvents records sync results as Events on the sync's ApplySet parent
// (its inventory ConfigMap): every failure, and every sync that changed
// something; an unchanged resync is not news.
func (m *manager) syncEvents(namespace, name string) func(reconciler.SyncResult, error) {
	if m.events == nil {
		return nil
	}
	ref := &corev1.ObjectReference{Kind: "ConfigMap", APIVersion: "v1", Namespace: namespace, Name: name}
	first := true
	return func(res reconciler.SyncResult, err error) {
		if err != nil {
			se := &reconciler.SyncError{Stage: reconciler.StageApply, Err: err}
			errors.As(err, &se)
			m.events.Eventf(ref, corev1.EventTypeWarning, "SyncFailed", "revision %s: %s: %v", se.Revision, se.Stage, se.Err)
			return
		}
		changed := res.Count(reconciler.Created) + res.Count(reconciler.Configured) + res.Count(reconciler.Pruned)
		if changed == 0 && !first {
			return
		}
		first = false
		m.events.Eventf(ref, corev1.EventTypeNormal, "SyncComplete", "revision %s: created %d, configured %d, unchanged %d, pruned %d",
			res.Revision, res.Count(reconciler.Created), res.Count(reconciler.Configured), res.Count(reconciler.Unchanged), res.Count(reconciler.Pruned))
	}
}

// stuckAfter is how long one sync of o may run before its loop counts as
// wedged: the fetch's git timeout (twice: ls-remote and fetch), the build
// time, the health timeout, and a minute for validation, apply and prune.
func stuckAfter(o *options) time.Duration {
	git := o.gitTimeout
	if git <= 0 {
		git = 10 * time.Minute // no git timeout: a generous bound all the same
	}
	return 2*git + o.build.timeout + o.healthTimeout + time.Minute
}
