package reconciler

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	coreinformers "k8s.io/client-go/informers/core/v1"
	storageinformers "k8s.io/client-go/informers/storage/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/gitopsd/gitopsd/reconciler/drift"
)

// Drift log messages, as DESIGN.md fixes them (the reminder and the
// actions are this implementation's additions).
const (
	MsgDriftDetected = "drift detected"
	MsgDriftResolved = "drift resolved"
	MsgDriftReminder = "drift reminder"
	MsgSelfHeal      = "self-heal"
	MsgReclaimFixed  = "reclaim policy enforced"
)

// WatcherOptions tunes a Watcher. The zero value only alerts.
type WatcherOptions struct {
	// Logger receives the drift records. Default: discard.
	Logger *slog.Logger
	// Drift holds the checks' grace periods and exceptions.
	Drift drift.Options
	// Remind is how often an open finding is logged again. 0: never.
	Remind time.Duration
	// SelfHeal re-applies git's state (by calling Heal) as soon as an
	// object drifts or goes missing.
	SelfHeal bool
	// Heal asks for a sync; the Loop's Trigger.
	Heal func()
	// EnforceReclaimPolicy patches a managed PV back to the reclaim policy
	// its StorageClass (or Drift.ReclaimPolicy) gives.
	EnforceReclaimPolicy bool
	// Events, when set, records a DriftDetected / DriftResolved Event on
	// the affected object.
	Events record.EventRecorder
	// Debounce gathers a burst of watch events into one check. Default
	// 150ms: a rollout of hundreds of pods costs a few checks, not one per
	// event, and an alert still comes well within a second.
	Debounce time.Duration
	// Metrics, when set, counts the open findings under Name.
	Metrics *Metrics
	Name    string
}

// Watcher watches what a sync applied (selected by its ApplySet label), and
// the Pods and PVCs of its namespaces, PersistentVolumes and StorageClasses,
// and reports drift: each change runs the pure checks of reconciler/drift
// on the informers' caches, and the alert book turns their findings into
// one record at onset, reminders, and one at the end. Only namespaces the
// sync manages are watched for Pods and PVCs, so memory does not grow with
// the rest of the cluster.
type Watcher struct {
	cs     kubernetes.Interface
	dyn    dynamic.Interface
	mapper meta.RESTMapper
	opts   WatcherOptions
	book   *drift.Book
	dirty  chan struct{}

	mu        sync.Mutex
	desired   []*unstructured.Unstructured
	gen       int  // bumped by every Applied
	suspended bool // a sync is applying: live state is in flux
	// partial is the revision of a sync that began applying and failed:
	// objects it reached carry it (see skipInFlight). Cleared by Applied.
	partial string
	open    []drift.Finding
	view    View

	// The informers of managed objects and the ApplySet id they select,
	// for LiveHashes; hashMemo keeps each cached object's liveHash until
	// its resourceVersion changes.
	cacheMu    sync.Mutex
	managedInf map[watchKey]cache.SharedIndexInformer
	cacheID    string
	hashMemo   map[watchKey]map[types.UID]memoHash

	// Owned by Run's goroutine.
	informers map[watchKey]*watched
	builtGen  int
	uids      map[drift.Ref]objectInfo
}

// watchKey names one informer: a resource in a namespace ("" = cluster).
type watchKey struct {
	resource  schema.GroupVersionResource
	namespace string
	managed   bool // selected by the ApplySet label
}

type watched struct {
	inf     cache.SharedIndexInformer
	stop    context.CancelFunc
	lastErr atomic.Pointer[error] // the last LIST or WATCH failure
}

type memoHash struct {
	resourceVersion string
	sum             [sha256.Size]byte
}

type objectInfo struct {
	apiVersion string
	uid        types.UID
}

var (
	podsResource    = corev1.SchemeGroupVersion.WithResource("pods")
	pvcsResource    = corev1.SchemeGroupVersion.WithResource("persistentvolumeclaims")
	pvsResource     = corev1.SchemeGroupVersion.WithResource("persistentvolumes")
	classesResource = storagev1.SchemeGroupVersion.WithResource("storageclasses")
)

// NewWatcher returns a Watcher; Run starts it and Applied tells it what to watch.
func NewWatcher(cs kubernetes.Interface, dyn dynamic.Interface, mapper meta.RESTMapper, opts WatcherOptions) *Watcher {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Debounce <= 0 {
		opts.Debounce = 150 * time.Millisecond
	}
	if opts.Heal == nil {
		opts.Heal = func() {}
	}
	return &Watcher{cs: cs, dyn: dyn, mapper: mapper, opts: opts, book: drift.NewBook(opts.Remind),
		dirty: make(chan struct{}, 1), informers: map[watchKey]*watched{},
		managedInf: map[watchKey]cache.SharedIndexInformer{}, hashMemo: map[watchKey]map[types.UID]memoHash{}}
}

// Applying suspends the checks while a sync changes the cluster: objects in
// flux between two revisions are not drift.
func (w *Watcher) Applying(revision string) {
	w.mu.Lock()
	w.suspended, w.partial = true, revision
	w.mu.Unlock()
}

// Applied gives the objects a sync applied (stamped, in apply order): from
// now on they are what the cluster must match. It resumes the checks.
func (w *Watcher) Applied(objs []*unstructured.Unstructured) {
	w.mu.Lock()
	w.desired, w.suspended, w.partial = objs, false, ""
	w.gen++
	w.mu.Unlock()
	w.poke()
}

// Resume ends a suspension without a new desired state (the sync failed).
func (w *Watcher) Resume() {
	w.mu.Lock()
	w.suspended = false
	w.mu.Unlock()
	w.poke()
}

// Open returns the findings currently reported and not yet resolved.
func (w *Watcher) Open() []drift.Finding {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.open)
}

// View returns the managed workloads and claims as last observed.
func (w *Watcher) View() View {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.view
}

func (w *Watcher) poke() {
	select {
	case w.dirty <- struct{}{}:
	default:
	}
}

// Run watches and checks until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	defer func() {
		for _, i := range w.informers {
			i.stop()
		}
	}()
	due := time.NewTimer(time.Hour)
	due.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.dirty:
			// Gather the rest of a burst (a rollout touches many objects).
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(w.opts.Debounce):
			}
		case <-due.C:
		}
		if next, ok := w.check(ctx); ok {
			due.Reset(time.Until(next))
		}
	}
}

// check runs the drift checks once and reports what changed; it returns
// when the alert book next needs a look (a grace period ending, a reminder).
func (w *Watcher) check(ctx context.Context) (time.Time, bool) {
	w.mu.Lock()
	desired, gen, suspended, partial := w.desired, w.gen, w.suspended, w.partial
	w.mu.Unlock()
	if suspended || desired == nil {
		return time.Time{}, false
	}
	if gen != w.builtGen {
		w.watch(ctx, desired)
		w.builtGen = gen
	}
	if err := w.synced(ctx); err != nil {
		w.opts.Logger.Error("drift watch failed", "error", err.Error())
		return time.Now().Add(10 * time.Second), true
	}
	now := time.Now()
	snap := w.snapshot(now, desired)
	findings := skipInFlight(drift.Check(snap, w.opts.Drift), partial, snap.Live)
	events := w.book.Observe(now, findings)
	w.mu.Lock()
	w.open = w.book.Open()
	w.view = newView(snap)
	w.mu.Unlock()
	w.opts.Metrics.SetFindings(w.opts.Name, w.Open())
	w.report(ctx, events)
	return w.book.NextDue()
}

// synced waits a little for informers that are still listing; on failure
// it says which cannot list and why (RBAC, most often).
func (w *Watcher) synced(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var fns []cache.InformerSynced
	for _, i := range w.informers {
		fns = append(fns, i.inf.HasSynced)
	}
	if cache.WaitForCacheSync(ctx.Done(), fns...) {
		return nil
	}
	var errs []error
	for key, i := range w.informers {
		if i.inf.HasSynced() {
			continue
		}
		cause := errors.New("not listed yet")
		if err := i.lastErr.Load(); err != nil {
			cause = *err
		}
		errs = append(errs, fmt.Errorf("watch %s: %w", key, cause))
	}
	return errors.Join(errs...)
}

func (k watchKey) String() string {
	if k.namespace == "" {
		return k.resource.Resource
	}
	return k.resource.Resource + " in " + k.namespace
}

// Once reports the drift of the desired objects now, for `gitopsd drift`:
// findings still inside their grace period are left out when the
// observation tells since when they hold, and reported otherwise.
func (w *Watcher) Once(ctx context.Context, desired []*unstructured.Unstructured) ([]drift.Finding, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer func() {
		for _, i := range w.informers {
			i.stop()
		}
	}()
	w.watch(ctx, desired)
	if err := w.synced(ctx); err != nil {
		return nil, err
	}
	now := time.Now()
	findings := drift.Check(w.snapshot(now, desired), w.opts.Drift)
	return slices.DeleteFunc(findings, func(f drift.Finding) bool {
		return !f.Since.IsZero() && now.Sub(f.Since) < f.Grace
	}), nil
}

// watch starts the informers the desired set needs and stops the others.
func (w *Watcher) watch(ctx context.Context, desired []*unstructured.Unstructured) {
	want := map[watchKey]bool{{resource: pvsResource}: true, {resource: classesResource}: true}
	for _, ns := range drift.ManagedNamespaces(desired) {
		want[watchKey{resource: podsResource, namespace: ns}] = true
		want[watchKey{resource: pvcsResource, namespace: ns}] = true
	}
	for _, obj := range desired {
		gvk := obj.GroupVersionKind()
		mapping, err := w.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			w.opts.Logger.Warn("drift watch: unknown kind", "object", RefOf(obj).String(), "error", err.Error())
			continue
		}
		key := watchKey{resource: mapping.Resource, managed: true}
		if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
			key.namespace = obj.GetNamespace()
		}
		want[key] = true
	}
	id := sharedLabel(desired, applySetPartOfLabel)
	selector := labels.SelectorFromSet(labels.Set{applySetPartOfLabel: id}).String()
	w.cacheMu.Lock()
	defer w.cacheMu.Unlock()
	w.cacheID = id
	for key, i := range w.informers {
		if !want[key] {
			i.stop()
			delete(w.informers, key)
			delete(w.managedInf, key)
			delete(w.hashMemo, key)
		}
	}
	for key := range want {
		if w.informers[key] != nil {
			continue
		}
		inf := w.newInformer(key, selector)
		i := &watched{inf: inf}
		_ = inf.SetWatchErrorHandler(func(_ *cache.Reflector, err error) { i.lastErr.Store(&err) })
		_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { w.poke() },
			UpdateFunc: func(any, any) { w.poke() },
			DeleteFunc: func(any) { w.poke() },
		})
		ictx, stop := context.WithCancel(ctx)
		i.stop = stop
		go inf.RunWithContext(ictx)
		w.informers[key] = i
		if key.managed {
			w.managedInf[key] = inf
		}
	}
}

func (w *Watcher) newInformer(key watchKey, selector string) cache.SharedIndexInformer {
	if key.managed {
		inf := dynamicinformer.NewFilteredDynamicInformer(w.dyn, key.resource, key.namespace, 0, cache.Indexers{},
			func(o *metav1.ListOptions) { o.LabelSelector = selector }).Informer()
		_ = inf.SetTransform(trimManaged)
		return inf
	}
	var inf cache.SharedIndexInformer
	switch key.resource {
	case podsResource:
		inf = coreinformers.NewFilteredPodInformer(w.cs, key.namespace, 0, cache.Indexers{}, nil)
	case pvcsResource:
		inf = coreinformers.NewFilteredPersistentVolumeClaimInformer(w.cs, key.namespace, 0, cache.Indexers{}, nil)
	case pvsResource:
		inf = coreinformers.NewFilteredPersistentVolumeInformer(w.cs, 0, cache.Indexers{}, nil)
	default:
		inf = storageinformers.NewFilteredStorageClassInformer(w.cs, 0, cache.Indexers{}, nil)
	}
	_ = inf.SetTransform(stripManagedFields)
	return inf
}

// LiveHashes implements LiveCache: a resync of the set reads its members'
// state from the informers that watch them for drift, not with a LIST.
func (w *Watcher) LiveHashes(resource schema.GroupVersionResource, namespace, id string) (map[ObjRef][sha256.Size]byte, bool) {
	key := watchKey{resource: resource, namespace: namespace, managed: true}
	w.cacheMu.Lock()
	defer w.cacheMu.Unlock()
	inf := w.managedInf[key]
	if inf == nil || id == "" || id != w.cacheID || !inf.HasSynced() {
		return nil, false
	}
	objs := inf.GetStore().List()
	old := w.hashMemo[key]
	memo := make(map[types.UID]memoHash, len(objs))
	hashes := make(map[ObjRef][sha256.Size]byte, len(objs))
	for _, o := range objs {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		h, ok := old[u.GetUID()]
		if !ok || h.resourceVersion != u.GetResourceVersion() {
			h = memoHash{resourceVersion: u.GetResourceVersion(), sum: liveHash(u)}
		}
		memo[u.GetUID()] = h
		hashes[RefOf(u)] = h.sum
	}
	w.hashMemo[key] = memo
	return hashes, true
}

// trimManaged drops from cached managed objects what no check reads, so a
// large inventory costs little memory: what normalizeLive drops, and the
// status of all but workloads (pod checks and the status page read a
// StatefulSet's). The managedFields of other writers stay: object-drift
// names the manager that changed a field.
func trimManaged(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	if u.GroupVersionKind().Group != "apps" {
		delete(u.Object, "status")
	}
	normalizeLive(u)
	return u, nil
}

// stripManagedFields drops what the checks never read from cached Pods,
// PVCs, PVs and StorageClasses: managedFields are often half an object.
func stripManagedFields(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

// snapshot assembles the checks' input from the informer caches. The
// cached objects are shared, not copied: the checks only read them.
func (w *Watcher) snapshot(now time.Time, desired []*unstructured.Unstructured) drift.Snapshot {
	snap := drift.Snapshot{Now: now, Desired: desired, Live: w.live()}
	w.uids = map[drift.Ref]objectInfo{}
	for ref, obj := range snap.Live {
		w.uids[ref] = objectInfo{apiVersion: obj.GetAPIVersion(), uid: obj.GetUID()}
	}
	for key, i := range w.informers {
		if key.managed {
			continue
		}
		for _, o := range i.inf.GetStore().List() {
			switch o := o.(type) {
			case *corev1.Pod:
				snap.Pods = append(snap.Pods, o)
				w.uids[drift.Ref{Kind: "Pod", Namespace: o.Namespace, Name: o.Name}] = objectInfo{"v1", o.UID}
			case *corev1.PersistentVolumeClaim:
				snap.PVCs = append(snap.PVCs, o)
				w.uids[drift.Ref{Kind: "PersistentVolumeClaim", Namespace: o.Namespace, Name: o.Name}] = objectInfo{"v1", o.UID}
			case *corev1.PersistentVolume:
				snap.PVs = append(snap.PVs, o)
				w.uids[drift.Ref{Kind: "PersistentVolume", Name: o.Name}] = objectInfo{"v1", o.UID}
			case *storagev1.StorageClass:
				snap.StorageClasses = append(snap.StorageClasses, o)
			}
		}
	}
	return snap
}

// live returns the cached managed objects by reference.
func (w *Watcher) live() map[drift.Ref]*unstructured.Unstructured {
	live := map[drift.Ref]*unstructured.Unstructured{}
	for key, i := range w.informers {
		if !key.managed {
			continue
		}
		for _, o := range i.inf.GetStore().List() {
			if u, ok := o.(*unstructured.Unstructured); ok {
				live[drift.RefOf(u)] = u
			}
		}
	}
	return live
}

// skipInFlight drops object-drift on objects that a sync which failed
// half-way left at its revision (partial): that is the sync's failure to
// report, not drift. Objects at any other revision are compared as usual:
// an object a commit did not change keeps the revision annotation of the
// commit that last changed it (the annotation alone is not a change, see
// ignoredFields), so "not the desired revision" says nothing.
func skipInFlight(findings []drift.Finding, partial string, live map[drift.Ref]*unstructured.Unstructured) []drift.Finding {
	if partial == "" {
		return findings
	}
	return slices.DeleteFunc(findings, func(f drift.Finding) bool {
		l, ok := live[f.Object]
		return ok && f.Code == drift.ObjectDrift && l.GetAnnotations()[RevisionAnnotation] == partial
	})
}

// report logs the book's events, records them as Kubernetes Events, and
// acts on them as the options say.
func (w *Watcher) report(ctx context.Context, events []drift.Event) {
	heal := false
	for _, ev := range events {
		f := ev.Finding
		args := []any{"drift", string(f.Code), "object", f.Object.String(), "detail", f.Detail}
		for _, a := range f.Attrs {
			args = append(args, a)
		}
		switch ev.Kind {
		case drift.Detected:
			w.opts.Logger.Warn(MsgDriftDetected, args...)
			w.event(f, corev1.EventTypeWarning, "DriftDetected", f.Detail)
		case drift.Resolved:
			args = append(args, "duration", time.Since(ev.Since).Round(time.Second).String())
			w.opts.Logger.Info(MsgDriftResolved, args...)
			w.event(f, corev1.EventTypeNormal, "DriftResolved", "resolved: "+f.Detail)
		case drift.Reminder:
			args = append(args, "since", ev.Since.UTC().Format(time.RFC3339))
			w.opts.Logger.Warn(MsgDriftReminder, args...)
		}
		if ev.Kind == drift.Resolved {
			continue
		}
		switch {
		case w.opts.SelfHeal && (f.Code == drift.ObjectDrift || f.Code == drift.ObjectMissing):
			w.opts.Logger.Info(MsgSelfHeal, "drift", string(f.Code), "object", f.Object.String())
			heal = true
		case w.opts.EnforceReclaimPolicy && f.Code == drift.PVReclaimPolicy:
			w.enforceReclaimPolicy(ctx, f)
		}
	}
	if heal {
		w.opts.Heal()
	}
}

func (w *Watcher) enforceReclaimPolicy(ctx context.Context, f drift.Finding) {
	want := attrString(f, "want")
	patch := fmt.Appendf(nil, `{"spec":{"persistentVolumeReclaimPolicy":%q}}`, want)
	_, err := w.cs.CoreV1().PersistentVolumes().Patch(ctx, f.Object.Name, types.MergePatchType, patch,
		metav1.PatchOptions{FieldManager: FieldManager})
	if err != nil {
		w.opts.Logger.Error(MsgReclaimFixed, "object", f.Object.String(), "reclaimPolicy", want, "error", err.Error())
		return
	}
	w.opts.Logger.Info(MsgReclaimFixed, "object", f.Object.String(), "reclaimPolicy", want)
}

// event records a Kubernetes Event on the finding's object.
func (w *Watcher) event(f drift.Finding, eventType, reason, message string) {
	if w.opts.Events == nil {
		return
	}
	info := w.uids[f.Object]
	ref := &corev1.ObjectReference{Kind: f.Object.Kind, Namespace: f.Object.Namespace, Name: f.Object.Name,
		APIVersion: info.apiVersion, UID: info.uid}
	w.opts.Events.AnnotatedEventf(ref, map[string]string{"gitopsd.io/drift": string(f.Code)}, eventType, reason, "%s", message)
}

func attrString(f drift.Finding, key string) string {
	for _, a := range f.Attrs {
		if a.Key == key {
			return a.Value.String()
		}
	}
	return ""
}
