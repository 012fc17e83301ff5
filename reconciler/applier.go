package reconciler

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
)

// FieldManager is the server-side apply field manager of every write.
const FieldManager = "gitopsd"

// RevisionAnnotation records on every applied object the source revision
// it was last applied from.
const RevisionAnnotation = "gitopsd.io/revision"

// Action is what an apply did to one object.
type Action string

const (
	Created    Action = "created"
	Configured Action = "configured"
	Unchanged  Action = "unchanged"
	Pruned     Action = "pruned"
)

// Change is one object's outcome.
type Change struct {
	Ref    ObjRef
	Action Action
}

// ApplierOptions tunes the Applier. The zero value works.
type ApplierOptions struct {
	// Concurrency bounds the requests in flight within one stage. Default 8.
	Concurrency int
	// NoForceConflicts refuses to take over fields another manager owns
	// (kubectl without --force-conflicts); by default gitopsd takes
	// ownership, as Flux does, since git is the source of truth.
	NoForceConflicts bool
	// Live, when set, serves the live members of a set from a watch cache
	// (the drift Watcher's informers) instead of a LIST per resource and
	// namespace on every resync.
	Live LiveCache
}

// LiveCache is a watch cache of a set's live members. It may lag the API
// server by a watch event: an object it shows older than gitopsd last saw
// is only read again, and a change it has not seen yet is the Watcher's to
// report and heal as soon as it arrives.
type LiveCache interface {
	// LiveHashes returns the liveHash of every cached object of resource
	// in namespace ("" when cluster-scoped) labelled part of ApplySet id,
	// or false when the cache does not hold them (not watched, not synced
	// yet, or another set).
	LiveHashes(resource schema.GroupVersionResource, namespace, id string) (map[ObjRef][sha256.Size]byte, bool)
}

// Applier validates and server-side applies a set of objects.
type Applier struct {
	dyn    dynamic.Interface
	mapper meta.ResettableRESTMapper
	opts   ApplierOptions

	// seen remembers, per object, its live state (liveHash) when the
	// dry-run last found it equal to the desired object (or right after an
	// apply), and that desired object's hash. An object whose live and
	// desired states are both unchanged since is still equal, so a resync
	// skips its dry-run.
	mu   sync.Mutex
	seen map[ObjRef]seenState
}

type seenState struct {
	live, desired [sha256.Size]byte
}

// NewApplier returns an Applier; the mapper turns kinds into resources.
func NewApplier(dyn dynamic.Interface, mapper meta.ResettableRESTMapper, opts ApplierOptions) *Applier {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 8
	}
	return &Applier{dyn: dyn, mapper: mapper, opts: opts, seen: map[ObjRef]seenState{}}
}

// plan is the dry-run verdict for one object.
type plan struct {
	obj    *unstructured.Unstructured
	action Action
	fields []FieldDiff // for Configured: what would change
}

// ObjectPlan is what an apply would do to one object.
type ObjectPlan struct {
	Ref    ObjRef
	Action Action
	Fields []FieldDiff
}

// Plan dry-runs the objects (as Validate does) and reports, per object, the
// action an apply would take and the fields it would change.
func (a *Applier) Plan(ctx context.Context, objs []*unstructured.Unstructured) ([]ObjectPlan, error) {
	plans, err := a.Validate(ctx, objs)
	if err != nil {
		return nil, err
	}
	out := make([]ObjectPlan, len(plans))
	for i, p := range plans {
		out[i] = ObjectPlan{Ref: RefOf(p.obj), Action: p.action, Fields: p.fields}
	}
	return out, nil
}

// ValidationError collects every object the server-side dry-run rejected.
type ValidationError struct{ Errs []error }

func (e *ValidationError) Error() string {
	msgs := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

func (e *ValidationError) Unwrap() []error { return e.Errs }

// Validate server-side dry-runs every object and says, for each, whether an
// apply would create, change or leave it. Any rejection fails the whole set:
// a ValidationError naming each object and the server's message (which names
// the field). Objects in a namespace the set itself creates are dry-run in
// the default namespace, since the API server cannot admit them before their
// namespace exists; that still validates their schema.
func (a *Applier) Validate(ctx context.Context, objs []*unstructured.Unstructured) ([]plan, error) {
	newNamespaces, err := a.missingNamespaces(ctx, objs)
	if err != nil {
		return nil, err
	}
	definedHere := crdKinds(objs)
	known := a.listLive(ctx, objs)
	plans := make([]plan, len(objs))
	errs := make([]error, len(objs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(a.opts.Concurrency)
	for i, obj := range objs {
		g.Go(func() error {
			plans[i], errs[i] = a.dryRun(gctx, obj, newNamespaces[obj.GetNamespace()], known)
			if errs[i] != nil && meta.IsNoMatchError(errs[i]) && definedHere[obj.GroupVersionKind().GroupKind()] {
				// Its CRD is in this very set: the server can only check
				// it once the CRD is established, during Apply.
				plans[i], errs[i] = plan{obj: obj, action: Created}, nil
			}
			if gctx.Err() != nil {
				return gctx.Err()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var failed []error
	for _, err := range errs {
		if err != nil {
			failed = append(failed, err)
		}
	}
	if len(failed) > 0 {
		return nil, &ValidationError{Errs: failed}
	}
	return plans, nil
}

func (a *Applier) dryRun(ctx context.Context, obj *unstructured.Unstructured, nsMissing bool, known *liveSet) (plan, error) {
	ref := RefOf(obj)
	res, err := a.resource(obj)
	if err != nil {
		return plan{}, fmt.Errorf("%s: %w", ref, err)
	}
	if nsMissing {
		probe := obj.DeepCopy()
		probe.SetNamespace(metav1.NamespaceDefault)
		res, _ = a.resource(probe)
		if _, err := a.patch(ctx, res, probe, true, true); err != nil {
			return plan{}, fmt.Errorf("%s: dry-run: %w", ref, err)
		}
		return plan{obj: obj, action: Created}, nil
	}
	desired := desiredHash(obj)
	listedHash, found, listed := known.lookup(ref)
	if found && a.unchangedSince(ref, listedHash, desired) {
		return plan{obj: obj, action: Unchanged}, nil
	}
	// Read the object unless the LIST showed it does not exist.
	var live *unstructured.Unstructured
	if !listed || found {
		var err error
		if live, err = res.Get(ctx, obj.GetName(), metav1.GetOptions{}); apierrors.IsNotFound(err) {
			live = nil
		} else if err != nil {
			return plan{}, fmt.Errorf("%s: get: %w", ref, explain(err))
		}
	}
	if live != nil && a.unchangedSince(ref, liveHash(live), desired) {
		return plan{obj: obj, action: Unchanged}, nil
	}
	dry, err := a.patch(ctx, res, obj, true, !a.opts.NoForceConflicts)
	if err != nil {
		return plan{}, fmt.Errorf("%s: dry-run: %w", ref, explain(err))
	}
	if live == nil && listed && dry.GetResourceVersion() != "" {
		// Not among the labelled members but it exists: an object this set
		// adopts, or one whose part-of label someone removed. Read it to
		// say what the apply changes.
		if live, err = res.Get(ctx, obj.GetName(), metav1.GetOptions{}); apierrors.IsNotFound(err) {
			live = nil
		} else if err != nil {
			return plan{}, fmt.Errorf("%s: get: %w", ref, explain(err))
		}
	}
	if live == nil {
		return plan{obj: obj, action: Created}, nil
	}
	// Compared field by field rather than whole: a controller may update
	// status between the read and the dry-run, and a new revision alone is
	// no reason to write.
	if fields := DiffObjects(live.Object, dry.Object); len(fields) > 0 {
		return plan{obj: obj, action: Configured, fields: fields}, nil
	}
	a.remember(ref, liveHash(live), desired)
	return plan{obj: obj, action: Unchanged}, nil
}

// Apply writes the objects the dry-run found would change, stage by stage
// (namespaces and CRDs, other cluster-scoped objects, then the rest), and
// returns every object's outcome in input order.
func (a *Applier) Apply(ctx context.Context, plans []plan) ([]Change, error) {
	changes := make([]Change, len(plans))
	for i, p := range plans {
		changes[i] = Change{Ref: RefOf(p.obj), Action: p.action}
	}
	for stage := range 3 {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(a.opts.Concurrency)
		for i, p := range plans {
			if p.action == Unchanged || stageOf(p.obj) != stage {
				continue
			}
			g.Go(func() error {
				res, err := a.resource(p.obj)
				var applied *unstructured.Unstructured
				if err == nil {
					applied, err = a.patch(gctx, res, p.obj, false, !a.opts.NoForceConflicts)
				}
				if err != nil {
					return fmt.Errorf("%s: apply: %w", changes[i].Ref, explain(err))
				}
				a.remember(changes[i].Ref, liveHash(applied), desiredHash(p.obj))
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return changes, err
		}
		if stage == 0 {
			if err := a.waitCRDsEstablished(ctx, plans); err != nil {
				return changes, err
			}
		}
	}
	return changes, nil
}

// crdKinds lists the kinds the CustomResourceDefinitions of a set define.
func crdKinds(objs []*unstructured.Unstructured) map[schema.GroupKind]bool {
	kinds := map[schema.GroupKind]bool{}
	for _, obj := range objs {
		if obj.GetKind() != "CustomResourceDefinition" {
			continue
		}
		group, _, _ := unstructured.NestedString(obj.Object, "spec", "group")
		kind, _, _ := unstructured.NestedString(obj.Object, "spec", "names", "kind")
		kinds[schema.GroupKind{Group: group, Kind: kind}] = true
	}
	return kinds
}

// waitCRDsEstablished waits until every CRD the plans created or changed
// serves its kinds, then forgets cached discovery so the custom resources of
// the next stages map.
func (a *Applier) waitCRDsEstablished(ctx context.Context, plans []plan) error {
	var crds []*unstructured.Unstructured
	for _, p := range plans {
		if p.action != Unchanged && p.obj.GetKind() == "CustomResourceDefinition" {
			crds = append(crds, p.obj)
		}
	}
	if len(crds) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for _, crd := range crds {
		for {
			live, err := a.get(ctx, crd)
			if err == nil && established(live) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s: not established: %w", RefOf(crd), ctx.Err())
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	a.mapper.Reset()
	return nil
}

func established(crd *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}

func stageOf(obj *unstructured.Unstructured) int {
	switch obj.GetKind() {
	case "Namespace", "CustomResourceDefinition":
		return 0
	}
	if obj.GetNamespace() == "" {
		return 1
	}
	return 2
}

func (a *Applier) patch(ctx context.Context, res dynamic.ResourceInterface, obj *unstructured.Unstructured, dryRun, force bool) (*unstructured.Unstructured, error) {
	data, err := json.Marshal(obj.Object)
	if err != nil {
		return nil, err
	}
	// Strict: a field the schema does not know (a typo in git) fails the
	// dry-run, naming the field, instead of being dropped with a warning
	// (the API server's default for apply).
	opts := metav1.PatchOptions{FieldManager: FieldManager, Force: &force, FieldValidation: metav1.FieldValidationStrict}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	return retryLost(ctx, func() (*unstructured.Unstructured, error) {
		return res.Patch(ctx, obj.GetName(), types.ApplyPatchType, data, opts)
	})
}

// resource maps an object to its API resource client.
func (a *Applier) resource(obj *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := obj.GroupVersionKind()
	mapping, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		a.mapper.Reset() // a CRD may have been installed since discovery ran
		mapping, err = a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		return nil, fmt.Errorf("unknown kind %s: %w", gvk, err)
	}
	ri := a.dyn.Resource(mapping.Resource)
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		if obj.GetNamespace() == "" {
			return nil, errors.New("namespaced kind without a namespace")
		}
		return ri.Namespace(obj.GetNamespace()), nil
	}
	return ri, nil
}

// missingNamespaces lists the namespaces the set creates that do not exist yet.
func (a *Applier) missingNamespaces(ctx context.Context, objs []*unstructured.Unstructured) (map[string]bool, error) {
	missing := map[string]bool{}
	for _, obj := range objs {
		if obj.GetKind() != "Namespace" || obj.GroupVersionKind().Group != "" {
			continue
		}
		res, err := a.resource(obj)
		if err != nil {
			return nil, err
		}
		if _, err := res.Get(ctx, obj.GetName(), metav1.GetOptions{}); apierrors.IsNotFound(err) {
			missing[obj.GetName()] = true
		} else if err != nil {
			return nil, fmt.Errorf("Namespace/%s: get: %w", obj.GetName(), err)
		}
	}
	return missing, nil
}

// explain adds a remediation to errors a user cannot act on from the server's
// message alone.
func explain(err error) error {
	msg := err.Error()
	if apierrors.IsInvalid(err) && strings.Contains(msg, "Forbidden: updates to statefulset spec for fields other than") {
		return fmt.Errorf("%w (a StatefulSet's volumeClaimTemplates, selector and serviceName cannot change in place; gitopsd never deletes a StatefulSet to change them: "+
			"delete it with --cascade=orphan so its pods and claims stay, and the next sync recreates it)", err)
	}
	if apierrors.IsForbidden(err) && strings.Contains(msg, " cannot ") && strings.Contains(msg, "resource") {
		// RBAC (admission plugins such as Pod Security also answer 403,
		// with other words).
		return fmt.Errorf("%w (gitopsd's identity lacks the RBAC rights for this kind here: grant get, list, watch, create, patch and delete on it in this namespace, as deploy/rbac-managed.yaml does for the MySQL stack's kinds, or take the object out of git)", err)
	}
	if apierrors.IsConflict(err) && strings.Contains(msg, "conflict") {
		return fmt.Errorf("%w (another field manager owns these fields; gitopsd was started with conflicts refused)", err)
	}
	return err
}

// resourceFor maps a reference to its API resource client, at the version
// the server prefers.
func (a *Applier) resourceFor(ref ObjRef) (dynamic.ResourceInterface, error) {
	mapping, err := a.mapper.RESTMapping(ref.GroupKind())
	if meta.IsNoMatchError(err) {
		a.mapper.Reset()
		mapping, err = a.mapper.RESTMapping(ref.GroupKind())
	}
	if err != nil {
		return nil, fmt.Errorf("unknown kind %s: %w", ref.GroupKind(), err)
	}
	ri := a.dyn.Resource(mapping.Resource)
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		return ri.Namespace(ref.Namespace), nil
	}
	return ri, nil
}

// get reads the live version of obj.
func (a *Applier) get(ctx context.Context, obj *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	res, err := a.resource(obj)
	if err != nil {
		return nil, err
	}
	return retryLost(ctx, func() (*unstructured.Unstructured, error) {
		return res.Get(ctx, obj.GetName(), metav1.GetOptions{})
	})
}

func (a *Applier) unchangedSince(ref ObjRef, live, desired [sha256.Size]byte) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	st, ok := a.seen[ref]
	return ok && st.live == live && st.desired == desired
}

func (a *Applier) remember(ref ObjRef, live, desired [sha256.Size]byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seen[ref] = seenState{live: live, desired: desired}
}

// liveHash identifies a live object's state apart from its status: a
// controller's status update (a Deployment's ready count) changes the
// resourceVersion but cannot make the object differ from git, since git
// sets no status; any other write, by anyone, changes the hash. It is the
// same for an object read from the API and for its copy in the Watcher's
// cache, which normalizeLive trimmed (see LiveCache).
func liveHash(live *unstructured.Unstructured) [sha256.Size]byte {
	// A copy of the two levels it changes, not of the whole object: the
	// Watcher hashes cached objects it must not change, a thousand at once.
	// (normalizeLive replaces annotations and managedFields, never edits
	// them in place.)
	c := &unstructured.Unstructured{Object: maps.Clone(live.Object)}
	delete(c.Object, "status")
	if md, ok := c.Object["metadata"].(map[string]any); ok {
		c.Object["metadata"] = maps.Clone(md)
	}
	c.SetResourceVersion("")
	normalizeLive(c)
	data, _ := json.Marshal(c.Object)
	return sha256.Sum256(data)
}

// lastAppliedAnnotation is kubectl's client-side apply record.
const lastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"

// normalizeLive drops in place what neither the dry-run skip nor a drift
// check reads of a live object: kubectl's last-applied annotation, the
// managedFields of status writers, and gitopsd's own managedFields entry
// (the largest: it owns every field git sets; a field it owns alone holds
// git's value, so it never names the manager of a drifted one, and its
// timestamp changes on every apply). It is idempotent.
func normalizeLive(u *unstructured.Unstructured) {
	if a := u.GetAnnotations(); a != nil {
		if _, ok := a[lastAppliedAnnotation]; ok {
			delete(a, lastAppliedAnnotation)
			if len(a) == 0 {
				a = nil
			}
			u.SetAnnotations(a)
		}
	}
	fields := u.GetManagedFields()
	var kept []metav1.ManagedFieldsEntry
	for _, f := range fields {
		if f.Subresource != "status" && f.Manager != FieldManager {
			kept = append(kept, f)
		}
	}
	if len(kept) != len(fields) {
		u.SetManagedFields(kept) // nil when none: the field goes
	}
}

// desiredHash identifies what gitopsd wants an object to be, leaving out the
// revision annotation, which changes with every commit without changing the
// object (see ignoredFields).
func desiredHash(obj *unstructured.Unstructured) [sha256.Size]byte {
	c := obj.DeepCopy()
	annotations := c.GetAnnotations()
	delete(annotations, RevisionAnnotation)
	c.SetAnnotations(annotations)
	data, _ := json.Marshal(c.Object) // map keys are sorted: stable
	return sha256.Sum256(data)
}
