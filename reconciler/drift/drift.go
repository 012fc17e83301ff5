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

// Key identifies a finding across observations.
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
	PodNotReadyGrace time.Duration // default 30s
	PodMissingGrace  time.Duration // default 60s
	PVCPendingGrace  time.Duration // default 2m
	// RestartWindow: a container restart this recent is pod-restarting.
	// Default 10m.
	RestartWindow time.Duration
	// ReclaimPolicy, if set, is the policy every managed PV must have,
	// instead of its StorageClass's.
	ReclaimPolicy string
	// IgnoreManagers are field managers whose changes are not drift (an
	// autoscaler's). nil means DefaultIgnoreManagers; empty means none.
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
}

// ManagedNamespaces lists the namespaces of a desired set: those of its
// objects and the Namespaces it declares.
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

// Check runs every check; the findings are sorted by Key.
func Check(s Snapshot, o Options) []Finding {
	var out []Finding
	for _, check := range []func(Snapshot, Options) []Finding{
		CheckObjectDrift, CheckObjectMissing, CheckPodNotReady, CheckPodMissing, CheckPodRestarting,
		CheckPVCOrphaned, CheckPVCPending, CheckPVCLost, CheckPVCSize, CheckPVReclaimPolicy, CheckPVReleased,
	} {
		out = append(out, check(s, o)...)
	}
	slices.SortFunc(out, func(a, b Finding) int { return strings.Compare(a.Key(), b.Key()) })
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
	var out []workload
	for _, obj := range s.Desired {
		ref := RefOf(obj)
		live := s.Live[ref]
		if live == nil || ref.Group != "apps" {
			continue
		}
		var w workload
		var sel *metav1.LabelSelector
		switch ref.Kind {
		case "StatefulSet":
			var sts appsv1.StatefulSet
			if runtime.DefaultUnstructuredConverter.FromUnstructured(live.Object, &sts) != nil {
				continue
			}
			w.sts, sel, w.replicas = &sts, sts.Spec.Selector, replicasOr1(sts.Spec.Replicas)
		case "Deployment":
			var d appsv1.Deployment
			if runtime.DefaultUnstructuredConverter.FromUnstructured(live.Object, &d) != nil {
				continue
			}
			sel, w.replicas = d.Spec.Selector, replicasOr1(d.Spec.Replicas)
		case "ReplicaSet":
			var rs appsv1.ReplicaSet
			if runtime.DefaultUnstructuredConverter.FromUnstructured(live.Object, &rs) != nil {
				continue
			}
			sel, w.replicas = rs.Spec.Selector, replicasOr1(rs.Spec.Replicas)
		case "DaemonSet":
			var ds appsv1.DaemonSet
			if runtime.DefaultUnstructuredConverter.FromUnstructured(live.Object, &ds) != nil {
				continue
			}
			sel, w.replicas = ds.Spec.Selector, ds.Status.DesiredNumberScheduled
		default:
			continue
		}
		selector, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil || selector.Empty() {
			continue
		}
		w.ref, w.selector = ref, selector
		for _, pod := range s.Pods {
			if pod.Namespace == ref.Namespace && selector.Matches(labels.Set(pod.Labels)) {
				w.pods = append(w.pods, pod)
			}
		}
		out = append(out, w)
	}
	return out
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

func since(d time.Duration) string {
	if d < time.Second {
		return "a moment"
	}
	return d.Round(time.Second).String()
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
