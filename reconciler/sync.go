package reconciler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/gitopsd/gitopsd/kustomize"
)

// Snapshot is one immutable revision of a source: a directory and the
// revision it holds.
type Snapshot struct {
	Dir      string
	Revision string
}

// Source is where desired state comes from (sources/git, sources/dir).
// Fetch is called from one goroutine at a time.
type Source interface {
	// Fetch brings the source up to date and returns its current snapshot.
	Fetch(ctx context.Context) (Snapshot, error)
	// String describes the source without secrets.
	String() string
}

// BuildFunc renders a snapshot directory into objects in apply order.
type BuildFunc func(ctx context.Context, dir string) ([]*unstructured.Unstructured, error)

// Stage names the step of a sync that failed, as logged in `stage`.
type Stage string

const (
	StageFetch    Stage = "fetch"
	StageBuild    Stage = "build"
	StageValidate Stage = "validate"
	StageApply    Stage = "apply"
	StagePrune    Stage = "prune"
	StageHealth   Stage = "health"
)

// SyncError is a failed sync: the stage, the revision (empty when the fetch
// failed) and the cause. Nothing was changed when the stage is fetch, build
// or validate.
type SyncError struct {
	Stage    Stage
	Revision string
	Err      error
}

func (e *SyncError) Error() string { return fmt.Sprintf("%s: %v", e.Stage, e.Err) }
func (e *SyncError) Unwrap() error { return e.Err }

// SyncOptions tunes a Syncer. The zero value works.
type SyncOptions struct {
	// NoPrune turns pruning off: objects that left git stay.
	NoPrune bool
	// PruneMaxShare is the largest share of the inventory one sync may
	// delete; a larger prune is refused as a likely mistake. Default 0.5.
	PruneMaxShare float64
	// NoWait skips the health wait: the sync is complete once applied and
	// pruned, as `kubectl apply` is (Flux's wait: false).
	NoWait bool
	// HealthTimeout bounds the wait for changed workloads. Default 5m.
	HealthTimeout time.Duration
	// HealthInterval is how often health is polled. Default 1s.
	HealthInterval time.Duration
	// OnlyNewRevisions makes a sync of the revision last applied do nothing
	// (SyncResult.Skipped): with self-heal off, a resync must not undo
	// what someone changed by hand, only a new commit applies.
	OnlyNewRevisions bool
	// Observer, when set, is told when a sync changes the cluster.
	Observer Observer
	// SupersedeInterval is how often the source is fetched during a health
	// wait: a newer revision ends the wait, so that a fix pushed after a
	// broken commit does not queue behind HealthTimeout. Default 5s.
	SupersedeInterval time.Duration
}

// Observer follows what the syncs apply: the drift Watcher.
type Observer interface {
	// Applying: a validated set of revision is about to change the
	// cluster.
	Applying(revision string)
	// Applied: the set is applied and pruned; it is the desired state now.
	Applied(objs []*unstructured.Unstructured)
	// Resume: the sync that called Applying failed; the desired state is
	// still the previous one.
	Resume()
}

// SyncResult is what one successful sync did.
type SyncResult struct {
	Revision string
	Changes  []Change
	Kept     []Kept
	Duration time.Duration
	// SupersededBy is set when the health wait ended early because the
	// source moved on to this revision; the next sync should start at once.
	SupersededBy string
	// FetchDuration is how long the source fetch took.
	FetchDuration time.Duration
	// Stages holds how long each stage after the fetch took, in order
	// (build, validate, apply, prune, health): where a slow sync spends
	// its time. Logged at debug level.
	Stages []StageTime
	// Skipped is set when the revision was applied before and
	// OnlyNewRevisions is on: nothing was read or written.
	Skipped bool
	// LastGood is set on a sync that failed at fetch, build or validation
	// and applied the last revision that synced instead (see
	// applyLastGood); Changes are then that apply's, and LastGoodErr its
	// error, if any.
	LastGood    string
	LastGoodErr error
}

// StageTime is the duration of one stage of a sync.
type StageTime struct {
	Stage    Stage
	Duration time.Duration
}

// timeStage records since when stage began.
func (r *SyncResult) timeStage(stage Stage, began time.Time) {
	r.Stages = append(r.Stages, StageTime{Stage: stage, Duration: time.Since(began)})
}

// Count returns how many objects got the action.
func (r SyncResult) Count(a Action) int {
	n := 0
	for _, c := range r.Changes {
		if c.Action == a {
			n++
		}
	}
	return n
}

// Syncer runs one sync: fetch, build, validate, apply, prune, health.
type Syncer struct {
	source  Source
	build   BuildFunc
	applier *Applier
	inv     *Inventory
	opts    SyncOptions

	// unhealthy are the objects the last health wait gave up on: they are
	// checked again by the next sync even though it finds them unchanged, so
	// a retry cannot report a broken revision healthy.
	unhealthy map[ObjRef]bool

	// applied is the revision of the last sync that applied.
	applied string
	// built is the last build's output, by revision (see buildOnce).
	built struct {
		revision string
		objs     []*unstructured.Unstructured
		redactor *kustomize.Redactor // their Secret values, see redact
		err      error               // the build failed: not run again for this revision
	}
	// good is the last revision that synced, and its objects as applied:
	// what applyLastGood applies.
	good struct {
		revision string
		objs     []*unstructured.Unstructured
	}
}

// NewSyncer wires the stages of a sync together.
func NewSyncer(source Source, build BuildFunc, applier *Applier, inv *Inventory, opts SyncOptions) *Syncer {
	if opts.PruneMaxShare <= 0 {
		opts.PruneMaxShare = 0.5
	}
	if opts.HealthTimeout <= 0 {
		opts.HealthTimeout = 5 * time.Minute
	}
	if opts.HealthInterval <= 0 {
		opts.HealthInterval = time.Second
	}
	if opts.SupersedeInterval <= 0 {
		opts.SupersedeInterval = 5 * time.Second
	}
	return &Syncer{source: source, build: build, applier: applier, inv: inv, opts: opts}
}

// Sync brings the cluster to the source's current revision.
func (s *Syncer) Sync(ctx context.Context) (SyncResult, error) {
	start := time.Now()
	snap, err := s.source.Fetch(ctx)
	return s.syncFetched(ctx, snap, err, start)
}

// syncFetched is Sync after its fetch, which began at start and returned
// snap or err.
func (s *Syncer) syncFetched(ctx context.Context, snap Snapshot, err error, start time.Time) (SyncResult, error) {
	fetched := time.Since(start)
	if err != nil {
		res := SyncResult{FetchDuration: fetched}
		s.applyLastGood(ctx, &res)
		res.Duration = time.Since(start)
		return res, s.redact(&SyncError{Stage: StageFetch, Err: err})
	}
	res, err := s.syncSnapshot(ctx, snap)
	res.Revision, res.FetchDuration = snap.Revision, fetched
	res.Duration = time.Since(start)
	if err != nil {
		var se *SyncError
		if errors.As(err, &se) {
			se.Revision = snap.Revision
		}
	}
	return res, s.redact(err)
}

// applyLastGood applies the objects of the last revision that synced when
// the current one cannot be fetched, built or validated, so that drift is
// still healed while a broken commit is the head or git is unreachable:
// never an older revision than the last applied, never a build that failed.
// It validates and applies (no prune, no health wait), and only when
// self-heal is on. The sync is still reported as failed; res says what
// this did.
func (s *Syncer) applyLastGood(ctx context.Context, res *SyncResult) {
	if s.opts.OnlyNewRevisions || s.good.objs == nil {
		return
	}
	objs := make([]*unstructured.Unstructured, len(s.good.objs))
	for i, obj := range s.good.objs {
		objs[i] = obj.DeepCopy()
	}
	res.LastGood = s.good.revision
	plans, err := s.applier.Validate(ctx, objs)
	if err == nil {
		res.Changes, err = s.applier.Apply(ctx, plans)
	}
	res.LastGoodErr = s.redact(err)
}

// redact is the one point through which a sync's error passes before it
// is logged, recorded as an Event or shown on /status: the Secret values of
// the last build are taken out of its message (API server messages may
// quote an invalid value). Build errors come scrubbed from the build
// worker already, which alone knows the values of a build that failed.
func (s *Syncer) redact(err error) error {
	if err == nil || s.built.redactor == nil {
		return err
	}
	if se := (*SyncError)(nil); errors.As(err, &se) {
		se.Err = &redactedError{err: se.Err, msg: s.built.redactor.Redact(se.Err.Error())}
		return err
	}
	return &redactedError{err: err, msg: s.built.redactor.Redact(err.Error())}
}

// redactedError is an error whose message had secret values taken out.
type redactedError struct {
	err error
	msg string
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

func (s *Syncer) syncSnapshot(ctx context.Context, snap Snapshot) (SyncResult, error) {
	var res SyncResult
	if s.opts.OnlyNewRevisions && snap.Revision == s.applied {
		res.Skipped = true
		return res, nil
	}
	began := time.Now()
	objs, err := s.buildOnce(ctx, snap)
	res.timeStage(StageBuild, began)
	if err != nil {
		s.applyLastGood(ctx, &res)
		return res, &SyncError{Stage: StageBuild, Err: err}
	}
	if len(objs) == 0 {
		s.applyLastGood(ctx, &res)
		return res, &SyncError{Stage: StageValidate, Err: fmt.Errorf("%w: nothing applied, nothing pruned", ErrEmptyBuild)}
	}
	current := make([]ObjRef, len(objs))
	for i, obj := range objs {
		s.stamp(obj, snap.Revision)
		current[i] = RefOf(obj)
	}
	began = time.Now()
	previous, _, err := s.inv.Load(ctx)
	if err != nil {
		return res, &SyncError{Stage: StageValidate, Err: err}
	}
	plans, err := s.applier.Validate(ctx, objs)
	res.timeStage(StageValidate, began)
	if err != nil {
		s.applyLastGood(ctx, &res)
		return res, &SyncError{Stage: StageValidate, Err: err}
	}
	applied := false
	if obs := s.opts.Observer; obs != nil {
		obs.Applying(snap.Revision)
		defer func() {
			if !applied {
				obs.Resume()
			}
		}()
	}
	// Record the union first: a sync cut short after applying still knows
	// every object it may have created.
	began = time.Now()
	stored := previous
	if changed(stored, union(previous, current)) {
		stored = union(previous, current)
		if err := s.inv.Store(ctx, stored, snap.Revision); err != nil {
			return res, &SyncError{Stage: StageApply, Err: err}
		}
	}
	res.Changes, err = s.applier.Apply(ctx, plans)
	res.timeStage(StageApply, began)
	if err != nil {
		return res, &SyncError{Stage: StageApply, Err: err}
	}
	began = time.Now()
	err = s.prune(ctx, previous, current, stored, snap.Revision, &res)
	res.timeStage(StagePrune, began)
	if err != nil {
		return res, &SyncError{Stage: StagePrune, Err: err}
	}
	applied = true
	s.good.revision, s.good.objs = snap.Revision, objs
	if s.opts.Observer != nil {
		s.opts.Observer.Applied(objs)
	}
	began = time.Now()
	err = s.waitHealthy(ctx, snap.Revision, res.Changes, objs, &res)
	res.timeStage(StageHealth, began)
	if err != nil {
		return res, &SyncError{Stage: StageHealth, Err: err}
	}
	if res.SupersededBy == "" {
		s.applied = snap.Revision
	}
	return res, nil
}

// buildOnce builds a snapshot, or returns the objects it built for the same
// revision last time: a revision is immutable, so a resync of an unchanged
// source skips kustomize (a second for 1,000 objects). The objects are
// handed out as copies, since a sync stamps them.
func (s *Syncer) buildOnce(ctx context.Context, snap Snapshot) ([]*unstructured.Unstructured, error) {
	if s.built.revision != snap.Revision || snap.Revision == "" {
		objs, err := s.build(ctx, snap.Dir)
		if err != nil && ctx.Err() == nil {
			// A build is a function of the revision: its failure is too,
			// and a hostile one may take the whole build time to fail.
			s.built.revision, s.built.objs, s.built.err = snap.Revision, nil, err
		}
		if err != nil {
			return nil, err
		}
		s.built.revision, s.built.objs, s.built.err = snap.Revision, objs, nil
		s.built.redactor = kustomize.NewRedactorFromObjects(objs)
	}
	if s.built.err != nil {
		return nil, s.built.err
	}
	out := make([]*unstructured.Unstructured, len(s.built.objs))
	for i, obj := range s.built.objs {
		out[i] = obj.DeepCopy()
	}
	return out, nil
}

// Plan fetches and builds the source as Sync does, and reports what an
// apply would do, without changing anything: `gitopsd diff`.
func (s *Syncer) Plan(ctx context.Context) ([]ObjectPlan, error) {
	plans, err := s.plan(ctx)
	return plans, s.redact(err)
}

func (s *Syncer) plan(ctx context.Context) ([]ObjectPlan, error) {
	snap, err := s.source.Fetch(ctx)
	if err != nil {
		return nil, &SyncError{Stage: StageFetch, Err: err}
	}
	objs, err := s.desired(ctx, snap)
	if err != nil {
		return nil, err
	}
	current := make([]ObjRef, len(objs))
	for i, obj := range objs {
		current[i] = RefOf(obj)
	}
	plans, err := s.applier.Plan(ctx, objs)
	if err != nil {
		return nil, &SyncError{Stage: StageValidate, Revision: snap.Revision, Err: err}
	}
	if s.opts.NoPrune {
		return plans, nil
	}
	previous, _, err := s.inv.Load(ctx)
	if err != nil {
		return nil, &SyncError{Stage: StageValidate, Revision: snap.Revision, Err: err}
	}
	prune, err := PlanPrune(previous, current, s.opts.PruneMaxShare)
	if err != nil {
		return nil, &SyncError{Stage: StagePrune, Revision: snap.Revision, Err: err}
	}
	for _, ref := range prune.Delete {
		plans = append(plans, ObjectPlan{Ref: ref, Action: Pruned})
	}
	return plans, nil
}

// Desired fetches and builds the source as Sync does and returns the
// objects, stamped as a sync would apply them: `gitopsd drift`.
func (s *Syncer) Desired(ctx context.Context) ([]*unstructured.Unstructured, string, error) {
	snap, err := s.source.Fetch(ctx)
	if err != nil {
		return nil, "", &SyncError{Stage: StageFetch, Err: err}
	}
	objs, err := s.desired(ctx, snap)
	return objs, snap.Revision, s.redact(err)
}

func (s *Syncer) desired(ctx context.Context, snap Snapshot) ([]*unstructured.Unstructured, error) {
	objs, err := s.buildOnce(ctx, snap)
	if err != nil {
		return nil, &SyncError{Stage: StageBuild, Revision: snap.Revision, Err: err}
	}
	if len(objs) == 0 {
		return nil, &SyncError{Stage: StageValidate, Revision: snap.Revision, Err: ErrEmptyBuild}
	}
	for _, obj := range objs {
		s.stamp(obj, snap.Revision)
	}
	return objs, nil
}

// stamp marks an object as a member of this inventory at this revision.
func (s *Syncer) stamp(obj *unstructured.Unstructured, revision string) {
	labels := obj.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels[applySetPartOfLabel] = s.inv.ID()
	obj.SetLabels(labels)
	annotations := obj.GetAnnotations()
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[RevisionAnnotation] = revision
	obj.SetAnnotations(annotations)
}

func (s *Syncer) prune(ctx context.Context, previous, current, stored []ObjRef, revision string, res *SyncResult) error {
	keep := current
	if !s.opts.NoPrune {
		plan, err := PlanPrune(previous, current, s.opts.PruneMaxShare)
		if err != nil {
			return err
		}
		res.Kept = plan.Keep
		// Deletes run with the applier's concurrency; each is checked and
		// preconditioned on its own (deleteIfOurs). All are tried: on
		// failures the inventory keeps exactly the objects not deleted,
		// and the next sync prunes them again.
		type outcome struct {
			deleted bool
			why     string
			err     error
		}
		outs := make([]outcome, len(plan.Delete))
		var g errgroup.Group
		g.SetLimit(s.applier.opts.Concurrency)
		for i, ref := range plan.Delete {
			g.Go(func() error {
				deleted, why, err := s.deleteIfOurs(ctx, ref)
				outs[i] = outcome{deleted, why, err}
				return nil
			})
		}
		g.Wait()
		var errs []error
		var failed []ObjRef
		for i, ref := range plan.Delete {
			switch o := outs[i]; {
			case o.err != nil:
				errs = append(errs, o.err)
				failed = append(failed, ref)
			case o.deleted:
				res.Changes = append(res.Changes, Change{Ref: ref, Action: Pruned})
			case o.why != "":
				res.Kept = append(res.Kept, Kept{Ref: ref, Reason: o.why})
			}
		}
		if len(errs) > 0 {
			keep = union(current, failed)
			if changed(stored, keep) {
				errs = append(errs, s.inv.Store(ctx, keep, revision))
			}
			return errors.Join(errs...)
		}
	} else {
		keep = union(previous, current) // still ours, just not deleted
	}
	if changed(stored, keep) {
		return s.inv.Store(ctx, keep, revision)
	}
	return nil
}

// deleteIfOurs deletes a pruned object unless it opted out or no longer
// belongs to this inventory; a gone object counts as done.
func (s *Syncer) deleteIfOurs(ctx context.Context, ref ObjRef) (bool, string, error) {
	res, err := s.applier.resourceFor(ref)
	if err != nil {
		return false, "", fmt.Errorf("%s: %w", ref, err)
	}
	live, err := retryLost(ctx, func() (*unstructured.Unstructured, error) { return res.Get(ctx, ref.Name, metav1.GetOptions{}) })
	if apierrors.IsNotFound(err) {
		return false, "", nil
	}
	if err != nil {
		return false, "", fmt.Errorf("%s: get: %w", ref, err)
	}
	if live.GetAnnotations()[PruneDisabledAnnotation] == "disabled" {
		return false, PruneDisabledAnnotation + ": disabled", nil
	}
	if live.GetLabels()[applySetPartOfLabel] != s.inv.ID() {
		return false, "no longer part of this inventory", nil
	}
	policy := metav1.DeletePropagationBackground
	// Preconditions: delete exactly what was checked, not an object another
	// inventory adopted since.
	uid, rv := live.GetUID(), live.GetResourceVersion()
	_, err = retryLost(ctx, func() (struct{}, error) {
		return struct{}{}, res.Delete(ctx, ref.Name, metav1.DeleteOptions{PropagationPolicy: &policy,
			Preconditions: &metav1.Preconditions{UID: &uid, ResourceVersion: &rv}})
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return false, "", fmt.Errorf("%s: delete: %w", ref, err)
	}
	return true, "", nil
}

func (s *Syncer) waitHealthy(ctx context.Context, revision string, changes []Change, objs []*unstructured.Unstructured, res *SyncResult) error {
	if s.opts.NoWait {
		return nil
	}
	check := needsHealthCheck(changes, objs)
	for i, obj := range objs {
		if s.unhealthy[changes[i].Ref] && changes[i].Action == Unchanged {
			check = append(check, obj)
		}
	}
	if len(check) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.HealthTimeout)
	defer cancel()
	waitCtx, supersede := context.WithCancel(ctx)
	defer supersede()
	newer := make(chan string, 1)
	watching := make(chan struct{})
	go func() {
		defer close(watching)
		s.watchForNewer(waitCtx, revision, newer, supersede)
	}()
	err := WaitHealthy(waitCtx, s.applier.get, check, s.opts.HealthInterval)
	supersede()
	<-watching // Fetch is never called from two goroutines at once
	if errors.Is(err, context.Canceled) && ctx.Err() == nil {
		// Superseded: not a verdict on this revision's health; the objects
		// still pending are checked again by the next sync.
		res.SupersededBy = <-newer
		s.unhealthy = map[ObjRef]bool{}
		for _, obj := range check {
			s.unhealthy[RefOf(obj)] = true
		}
		return nil
	}
	var he *HealthError
	if errors.As(err, &he) {
		s.unhealthy = map[ObjRef]bool{}
		for _, obj := range check {
			s.unhealthy[RefOf(obj)] = true
		}
	} else if err == nil {
		s.unhealthy = nil
	}
	return err
}

func union(a, b []ObjRef) []ObjRef {
	out := slices.Concat(a, b)
	slices.SortFunc(out, compareRefs)
	return slices.Compact(out)
}

// changed reports whether two inventories differ as sets.
func changed(a, b []ObjRef) bool {
	return !slices.Equal(union(a, nil), union(b, nil))
}

// watchForNewer fetches the source every SupersedeInterval while a health
// wait runs, and ends the wait when the revision moved on.
func (s *Syncer) watchForNewer(ctx context.Context, revision string, newer chan<- string, supersede context.CancelFunc) {
	ticker := time.NewTicker(s.opts.SupersedeInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		snap, err := s.source.Fetch(ctx)
		if err == nil && snap.Revision != revision {
			newer <- snap.Revision
			supersede()
			return
		}
	}
}
