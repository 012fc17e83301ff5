package drift

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestRef(t *testing.T) {
	tests := map[string]struct {
		obj  string
		want Ref
		str  string
	}{
		"namespaced": {"apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: mysql, namespace: mysql}\n",
			Ref{Group: "apps", Kind: "StatefulSet", Namespace: "mysql", Name: "mysql"}, "StatefulSet/mysql/mysql"},
		"cluster scoped": {"apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: mysql-gp2}\n",
			Ref{Group: "storage.k8s.io", Kind: "StorageClass", Name: "mysql-gp2"}, "StorageClass/mysql-gp2"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := RefOf(parse(t, tc.obj)[0])
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("RefOf (-want +got):\n%s", diff)
			}
			if got.String() != tc.str {
				t.Errorf("String() = %q, want %q", got.String(), tc.str)
			}
		})
	}
}

func TestManagedNamespaces(t *testing.T) {
	got := ManagedNamespaces(parse(t, `apiVersion: v1
kind: Namespace
metadata: {name: mysql}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: a, namespace: mysql}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: b, namespace: monitoring}
---
apiVersion: v1
kind: Namespace
metadata: {name: empty}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: mysql-gp2}
`))
	if diff := cmp.Diff([]string{"empty", "monitoring", "mysql"}, got); diff != "" {
		t.Errorf("ManagedNamespaces (-want +got):\n%s", diff)
	}
}

func TestCheck(t *testing.T) {
	t.Run("the steady state of the MySQL stack is clean", func(t *testing.T) {
		if got := Check(mysql(t), Options{}); len(got) != 0 {
			t.Errorf("findings on a steady cluster: %q", renderAll(got))
		}
	})

	t.Run("a scale-down by hand: everything it causes, sorted by key", func(t *testing.T) {
		s := mysql(t)
		setField(t, s.Live[statefulSetRef].Object, int64(1), "spec", "replicas")
		updateBy(t, s.Live[statefulSetRef], "kubectl", "scale", `{"f:spec":{"f:replicas":{}}}`)
		withoutPod(&s, "mysql-1")
		volumeOf(t, s, "data-mysql-1").Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimRetain
		want := []string{
			"object-drift StatefulSet/mysql/mysql field=spec.replicas want=2 got=1 manager=kubectl",
			"pv-reclaim-policy PersistentVolume/pvc-0e2a524c-e23e-4d5f-a7c5-29c20355b4f8 want=Delete got=Retain reclaimPolicy=Retain claim=mysql/data-mysql-1 storageClass=mysql-gp2",
			"pvc-orphaned PersistentVolumeClaim/mysql/data-mysql-1 ordinal=1 replicas=1 statefulSet=StatefulSet/mysql/mysql volume=pvc-0e2a524c-e23e-4d5f-a7c5-29c20355b4f8",
		}
		first := renderAll(Check(s, Options{}))
		if diff := cmp.Diff(want, first); diff != "" {
			t.Errorf("findings (-want +got):\n%s", diff)
		}
		for range 5 {
			if diff := cmp.Diff(first, renderAll(Check(s, Options{}))); diff != "" {
				t.Fatalf("not deterministic (-first +again):\n%s", diff)
			}
		}
	})
}

func TestWorkloadKinds(t *testing.T) {
	running := func(name string, phase corev1.PodPhase) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "exporter"},
			CreationTimestamp: metav1.NewTime(now.Add(-time.Hour))}, Status: corev1.PodStatus{Phase: phase}}
	}
	tests := map[string]struct {
		obj  string
		pods []*corev1.Pod
		want []string
	}{
		"Deployment short of pods": {
			obj: `apiVersion: apps/v1
kind: Deployment
metadata: {name: exporter, namespace: mysql}
spec:
  replicas: 3
  selector: {matchLabels: {app: exporter}}
`,
			pods: []*corev1.Pod{running("exporter-7d9f-a", corev1.PodRunning), running("exporter-7d9f-b", corev1.PodPending)},
			want: []string{"pod-missing Deployment/mysql/exporter workload=Deployment/mysql/exporter replicas=3 running=1 reason=Pending grace=1m0s"},
		},
		"ReplicaSet with no pods at all": {
			obj: `apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: exporter, namespace: mysql}
spec:
  selector: {matchLabels: {app: exporter}}
`,
			want: []string{"pod-missing ReplicaSet/mysql/exporter workload=ReplicaSet/mysql/exporter replicas=1 running=0 reason=absent grace=1m0s"},
		},
		"DaemonSet wants what its status says": {
			obj: `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: exporter, namespace: mysql}
spec:
  selector: {matchLabels: {app: exporter}}
status: {desiredNumberScheduled: 2}
`,
			pods: []*corev1.Pod{running("exporter-x", corev1.PodRunning), running("exporter-y", corev1.PodRunning)},
		},
		"a workload without a selector claims no pods": {
			obj: `apiVersion: apps/v1
kind: Deployment
metadata: {name: exporter, namespace: mysql}
spec:
  replicas: 0
  selector: {}
`,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			obj := parse(t, tc.obj)[0]
			s := Snapshot{Now: now, Desired: []*unstructured.Unstructured{obj}, Live: map[Ref]*unstructured.Unstructured{RefOf(obj): obj}, Pods: tc.pods}
			if diff := cmp.Diff(tc.want, renderAll(CheckPodMissing(s, Options{}))); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFindingKey(t *testing.T) {
	pod := Ref{Kind: "Pod", Namespace: ns, Name: "mysql-0"}
	tests := map[string]struct {
		f    Finding
		want string
	}{
		"code and object": {Finding{Code: PodNotReady, Object: pod}, "pod-not-ready /Pod/mysql/mysql-0"},
		"object-drift: per field": {Finding{Code: ObjectDrift, Object: statefulSetRef, Attrs: attrList("field", "spec.replicas", "got", "3")},
			"object-drift apps/StatefulSet/mysql/mysql spec.replicas"},
		"pod-restarting: per container": {Finding{Code: PodRestarting, Object: pod, Attrs: attrList("container", "xtrabackup")},
			"pod-restarting /Pod/mysql/mysql-0 xtrabackup"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := tc.f.Key(); got != tc.want {
				t.Errorf("Key() = %q, want %q", got, tc.want)
			}
		})
	}
}
