package drift

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
)

// Code names a kind of drift, as DESIGN.md lists them.
type Code string

const (
	ObjectDrift     Code = "object-drift"
	ObjectMissing   Code = "object-missing"
	PodNotReady     Code = "pod-not-ready"
	PodMissing      Code = "pod-missing"
	PodRestarting   Code = "pod-restarting"
	PVCOrphaned     Code = "pvc-orphaned"
	PVCPending      Code = "pvc-pending"
	PVCLost         Code = "pvc-lost"
	PVCSize         Code = "pvc-size"
	PVReclaimPolicy Code = "pv-reclaim-policy"
	PVReleased      Code = "pv-released"
)

// Codes lists every code, in DESIGN.md's order.
var Codes = []Code{ObjectDrift, ObjectMissing, PodNotReady, PodMissing, PodRestarting,
	PVCOrphaned, PVCPending, PVCLost, PVCSize, PVReclaimPolicy, PVReleased}

// Ref names an object.
type Ref struct{ Group, Kind, Namespace, Name string }

// RefOf returns the reference of an object.
func RefOf(obj *unstructured.Unstructured) Ref {
	gvk := obj.GroupVersionKind()
	return Ref{Group: gvk.Group, Kind: gvk.Kind, Namespace: obj.GetNamespace(), Name: obj.GetName()}
}

// String is "Kind/namespace/name", or "Kind/name" when cluster scoped.
func (r Ref) String() string {
	if r.Namespace == "" {
		return r.Kind + "/" + r.Name
	}
	return r.Kind + "/" + r.Namespace + "/" + r.Name
}

// Finding is one problem seen in one observation.
type Finding struct {
	Code   Code
	Object Ref
	// Detail is one human sentence.
	Detail string
	// Attrs are the code's own keys (field, want, got, ordinal, ...).
	Attrs []slog.Attr
	// Grace is how long the finding must last before it is reported.
	Grace time.Duration
	// Since is when the condition began, when the observation says so (a
	// condition's lastTransitionTime, a claim's creation); zero otherwise.
	Since time.Time
}

// Key identifies a finding across observations: its code and object, plus
// the field for object-drift and the container for pod-restarting (two
// fields or two containers are two problems).
func (f Finding) Key() string {
	key := string(f.Code) + " " + f.Object.Group + "/" + f.Object.String()
	switch f.Code {
	case ObjectDrift:
		key += " " + f.attr("field")
	case PodRestarting:
		key += " " + f.attr("container")
	}
	return key
}

func (f Finding) attr(key string) string {
	for _, a := range f.Attrs {
		if a.Key == key {
			return a.Value.String()
		}
	}
	return ""
}

// Options tunes the checks. The zero value gets the defaults.
type Options struct {
	// PodNotReadyGrace lets a pod fail its readiness probe for a while (a
	// MySQL follower catching up) before it is reported. Default 30s.
	PodNotReadyGrace time.Duration
	// PodMissingGrace covers a rollout or a reschedule, when a pod is
	// legitimately absent or Pending for a moment. Default 60s.
	PodMissingGrace time.Duration
	// PVCPendingGrace covers provisioning, which takes a while on EBS.
	// Default 2m.
	PVCPendingGrace time.Duration
	// RestartWindow: a container that restarted this recently is
	// pod-restarting, so a crash is reported even when the container is up
	// again by the time we look. Default 10m.
	RestartWindow time.Duration
	// ReclaimPolicy, if set, is the policy every managed PV must have,
	// instead of its StorageClass's (say "Retain" for a database whose
	// volumes must outlive their claims).
	ReclaimPolicy string
	// IgnoreManagers are field managers whose changes are not drift (an
	// autoscaler's replicas). nil means DefaultIgnoreManagers; an empty,
	// non-nil slice means none.
	IgnoreManagers []string
	// IgnoreFields are field paths never compared: "spec.replicas" for
	// every kind, "StatefulSet:spec.replicas" for one. A path covers
	// everything below it.
	IgnoreFields []string
}

// DefaultIgnoreManagers: changes the controller manager makes (the
// horizontal pod autoscaler's replicas) are not drift.
var DefaultIgnoreManagers = []string{"kube-controller-manager"}

func (o Options) withDefaults() Options {
	if o.PodNotReadyGrace <= 0 {
		o.PodNotReadyGrace = 30 * time.Second
	}
	if o.PodMissingGrace <= 0 {
		o.PodMissingGrace = time.Minute
	}
	if o.PVCPendingGrace <= 0 {
		o.PVCPendingGrace = 2 * time.Minute
	}
	if o.RestartWindow <= 0 {
		o.RestartWindow = 10 * time.Minute
	}
	if o.IgnoreManagers == nil {
		o.IgnoreManagers = DefaultIgnoreManagers
	}
	return o
}

// Snapshot is one observation of the cluster, with what git declares.
type Snapshot struct {
	Now time.Time
	// Desired is what git declares, as last applied.
	Desired []*unstructured.Unstructured
	// Live holds the live state of the desired objects that exist.
	Live map[Ref]*unstructured.Unstructured
	// Pods and PVCs of the managed namespaces.
	Pods []*corev1.Pod
	PVCs []*corev1.PersistentVolumeClaim
	// PVs and StorageClasses of the cluster.
	PVs            []*corev1.PersistentVolume
	StorageClasses []*storagev1.StorageClass

	// memo, set by Check, shares what several checks derive from the
	// snapshot (its workloads) among them.
	memo *memo
}

type memo struct {
	workloads []workload
	done      bool
}

// ManagedNamespaces lists, sorted, the namespaces of a desired set: those
// of its objects and the Namespaces it declares. Only pods, claims and
// volumes of these namespaces are checked.
func ManagedNamespaces(desired []*unstructured.Unstructured) []string {
	var out []string
	for _, obj := range desired {
		if ns := obj.GetNamespace(); ns != "" {
			out = append(out, ns)
		}
		if obj.GetKind() == "Namespace" && obj.GroupVersionKind().Group == "" {
			out = append(out, obj.GetName())
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Check runs every check; the findings are sorted by Key (stable, so the
// result is deterministic for a given snapshot).
func Check(s Snapshot, o Options) []Finding {
	s.memo = &memo{}
	var out []Finding
	for _, check := range []func(Snapshot, Options) []Finding{
		CheckObjectDrift, CheckObjectMissing, CheckPodNotReady, CheckPodMissing, CheckPodRestarting,
		CheckPVCOrphaned, CheckPVCPending, CheckPVCLost, CheckPVCSize, CheckPVReclaimPolicy, CheckPVReleased,
	} {
		out = append(out, check(s, o)...)
	}
	slices.SortStableFunc(out, func(a, b Finding) int { return strings.Compare(a.Key(), b.Key()) })
	return out
}

// workload is a managed StatefulSet, Deployment, ReplicaSet or DaemonSet as
// it is live, with the pods its selector matches.
type workload struct {
	ref      Ref
	selector labels.Selector
	sts      *appsv1.StatefulSet // nil for other kinds
	replicas int32               // desired running pods
	pods     []*corev1.Pod
}

// workloads returns the live managed workloads, in desired order.
func workloads(s Snapshot) []workload {
	if s.memo != nil && s.memo.done {
		return s.memo.workloads
	}
	podsIn := map[string][]*corev1.Pod{}
	for _, pod := range s.Pods {
		podsIn[pod.Namespace] = append(podsIn[pod.Namespace], pod)
	}
	var out []workload
	for _, obj := range s.Desired {
		ref := RefOf(obj)
		w, sel, ok := asWorkload(ref, s.Live[ref])
		if !ok {
			continue
		}
		selector, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil || selector.Empty() {
			continue // an empty selector would claim every pod
		}
		w.ref, w.selector = ref, selector
		for _, pod := range podsIn[ref.Namespace] {
			if selector.Matches(labels.Set(pod.Labels)) {
				w.pods = append(w.pods, pod)
			}
		}
		out = append(out, w)
	}
	if s.memo != nil {
		s.memo.workloads, s.memo.done = out, true
	}
	return out
}

// asWorkload reads the replicas and selector of a live workload; ok is
// false for other kinds.
func asWorkload(ref Ref, live *unstructured.Unstructured) (w workload, sel *metav1.LabelSelector, ok bool) {
	if live == nil || ref.Group != "apps" {
		return w, nil, false
	}
	switch ref.Kind {
	case "StatefulSet":
		// The storage checks read its whole spec; a stack has few.
		if sts, ok := convert[appsv1.StatefulSet](live); ok {
			return workload{sts: sts, replicas: replicasOr1(sts.Spec.Replicas)}, sts.Spec.Selector, true
		}
	case "Deployment", "ReplicaSet":
		// Only replicas and the selector: a set may hold hundreds.
		sel, ok := selectorOf(live)
		if !ok {
			return w, nil, false
		}
		replicas := int32(1)
		if r, found, err := unstructured.NestedInt64(live.Object, "spec", "replicas"); err == nil && found {
			replicas = int32(r)
		}
		return workload{replicas: replicas}, sel, true
	case "DaemonSet":
		// A DaemonSet wants one pod per eligible node, which only its
		// status knows.
		sel, ok := selectorOf(live)
		if !ok {
			return w, nil, false
		}
		n, _, _ := unstructured.NestedInt64(live.Object, "status", "desiredNumberScheduled")
		return workload{replicas: int32(n)}, sel, true
	}
	return w, nil, false
}

// selectorOf reads spec.selector of a live workload.
func selectorOf(live *unstructured.Unstructured) (*metav1.LabelSelector, bool) {
	m, found, err := unstructured.NestedMap(live.Object, "spec", "selector")
	if err != nil || !found {
		return nil, false
	}
	var sel metav1.LabelSelector
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m, &sel); err != nil {
		return nil, false
	}
	return &sel, true
}

// convert reads an unstructured object into its typed form.
func convert[T any](u *unstructured.Unstructured) (*T, bool) {
	var out T
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &out); err != nil {
		return nil, false
	}
	return &out, true
}

func replicasOr1(r *int32) int32 {
	if r == nil {
		return 1
	}
	return *r
}

// ordinals returns a StatefulSet's ordinal range [start, start+replicas).
func ordinals(sts *appsv1.StatefulSet) (start, end int) {
	if sts.Spec.Ordinals != nil {
		start = int(sts.Spec.Ordinals.Start)
	}
	return start, start + int(replicasOr1(sts.Spec.Replicas))
}

func podRef(pod *corev1.Pod) Ref {
	return Ref{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name}
}

func claimRef(pvc *corev1.PersistentVolumeClaim) Ref {
	return Ref{Kind: "PersistentVolumeClaim", Namespace: pvc.Namespace, Name: pvc.Name}
}

func pvRef(pv *corev1.PersistentVolume) Ref {
	return Ref{Kind: "PersistentVolume", Name: pv.Name}
}

func detailf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

// onset turns an API timestamp into the latest moment the condition can
// have begun: the API keeps whole seconds, so the true moment lies within
// the second after it. A grace period counted from there is never cut
// short (at most a second late).
func onset(t metav1.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.Add(time.Second)
}
