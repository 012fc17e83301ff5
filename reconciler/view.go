package reconciler

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/gitopsd/gitopsd/reconciler/drift"
)

// View is what the status page shows of the managed stack: its workloads
// with their pods, and its claims with their volumes.
type View struct {
	Workloads []WorkloadView `json:"workloads"`
	Claims    []ClaimView    `json:"claims"`
}

// WorkloadView is one StatefulSet, Deployment or DaemonSet.
type WorkloadView struct {
	Object   string    `json:"object"`
	Replicas int64     `json:"replicas"`
	Ready    int64     `json:"ready"`
	Pods     []PodView `json:"pods"`
}

// PodView is one pod of a workload.
type PodView struct {
	Name       string `json:"name"`
	Phase      string `json:"phase"`
	Ready      bool   `json:"ready"`
	Containers string `json:"containers"` // "1/2", as kubectl's READY column
	Node       string `json:"node"`
}

// ClaimView is one PVC of a managed namespace and its volume.
type ClaimView struct {
	Name          string `json:"name"`
	Phase         string `json:"phase"`
	Volume        string `json:"volume"`
	Capacity      string `json:"capacity"`
	StorageClass  string `json:"storageClass"`
	ReclaimPolicy string `json:"reclaimPolicy"`
}

func newView(s drift.Snapshot) View {
	var v View
	for _, obj := range s.Desired {
		ref := drift.RefOf(obj)
		live := s.Live[ref]
		if live == nil || ref.Group != "apps" || !slices.Contains([]string{"StatefulSet", "Deployment", "DaemonSet"}, ref.Kind) {
			continue
		}
		w := WorkloadView{Object: ref.String()}
		w.Replicas, _, _ = unstructured.NestedInt64(live.Object, "spec", "replicas")
		w.Ready, _, _ = unstructured.NestedInt64(live.Object, "status", "readyReplicas")
		selector := podSelector(live)
		for _, pod := range s.Pods {
			if pod.Namespace == ref.Namespace && selector != nil && selector.Matches(labels.Set(pod.Labels)) {
				w.Pods = append(w.Pods, podView(pod))
			}
		}
		slices.SortFunc(w.Pods, func(a, b PodView) int { return strings.Compare(a.Name, b.Name) })
		v.Workloads = append(v.Workloads, w)
	}
	volumes := map[string]*corev1.PersistentVolume{}
	for _, pv := range s.PVs {
		volumes[pv.Name] = pv
	}
	for _, pvc := range s.PVCs {
		c := ClaimView{Name: pvc.Namespace + "/" + pvc.Name, Phase: string(pvc.Status.Phase), Volume: pvc.Spec.VolumeName}
		if pvc.Spec.StorageClassName != nil {
			c.StorageClass = *pvc.Spec.StorageClassName
		}
		if q, ok := pvc.Status.Capacity[corev1.ResourceStorage]; ok {
			c.Capacity = q.String()
		}
		if pv := volumes[pvc.Spec.VolumeName]; pv != nil {
			c.ReclaimPolicy = string(pv.Spec.PersistentVolumeReclaimPolicy)
		}
		v.Claims = append(v.Claims, c)
	}
	slices.SortFunc(v.Claims, func(a, b ClaimView) int { return strings.Compare(a.Name, b.Name) })
	return v
}

func podSelector(live *unstructured.Unstructured) labels.Selector {
	m, ok, _ := unstructured.NestedMap(live.Object, "spec", "selector")
	if !ok {
		return nil
	}
	var sel metav1.LabelSelector
	if err := fromUnstructured(m, &sel); err != nil {
		return nil
	}
	s, err := metav1.LabelSelectorAsSelector(&sel)
	if err != nil || s.Empty() {
		return nil
	}
	return s
}

func podView(pod *corev1.Pod) PodView {
	ready := 0
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Ready {
			ready++
		}
	}
	p := PodView{Name: pod.Name, Phase: string(pod.Status.Phase), Node: pod.Spec.NodeName,
		Containers: fmt.Sprintf("%d/%d", ready, len(pod.Spec.Containers))}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			p.Ready = c.Status == corev1.ConditionTrue
		}
	}
	return p
}

func fromUnstructured(m map[string]any, out any) error {
	return runtime.DefaultUnstructuredConverter.FromUnstructured(m, out)
}
