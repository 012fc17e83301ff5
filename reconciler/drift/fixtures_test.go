package drift

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// now is the fixed clock of every fixture.
var now = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

const ns = "mysql"

func obj(t *testing.T, y string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(y), &u.Object); err != nil {
		t.Fatal(err)
	}
	return u
}

// statefulSet is the MySQL StatefulSet of base/, as git declares it.
func statefulSet(t *testing.T, replicas int, extra string) *unstructured.Unstructured {
	return obj(t, fmt.Sprintf(`apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: mysql
  namespace: mysql
  annotations:
    gitopsd.io/revision: main@sha1:abc
spec:
  serviceName: mysql
  replicas: %d
  selector:
    matchLabels: {app: mysql}
  template:
    metadata:
      labels: {app: mysql}
    spec:
      containers:
      - name: mysql
        image: mysql:5.7.44
        env:
        - {name: MYSQL_ALLOW_EMPTY_PASSWORD, value: "1"}
        ports:
        - {name: mysql, containerPort: 3306}
        resources:
          requests: {cpu: 500m, memory: 1Gi}
      - name: xtrabackup
        image: gcr.io/google-samples/xtrabackup:1.0
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes: ["ReadWriteOnce"]
      storageClassName: mysql-gp2
      resources:
        requests:
          storage: 10Gi
%s`, replicas, extra))
}

// liveOf returns desired as the API server would show it: defaults added,
// quantities normalized, managed by gitopsd except for fields the extra
// managers own.
func liveOf(t *testing.T, desired *unstructured.Unstructured, edit func(m map[string]any), managers ...string) *unstructured.Unstructured {
	t.Helper()
	live := desired.DeepCopy()
	live.SetResourceVersion("123")
	live.SetUID("uid-1")
	live.SetGeneration(3)
	annotations := live.GetAnnotations()
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations["gitopsd.io/revision"] = "main@sha1:abc"
	live.SetAnnotations(annotations)
	if edit != nil {
		edit(live.Object)
	}
	entries := []metav1.ManagedFieldsEntry{{Manager: "gitopsd", Operation: metav1.ManagedFieldsOperationApply, FieldsType: "FieldsV1",
		FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:replicas":{},"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"mysql\"}":{".":{},"f:image":{},"f:env":{"k:{\"name\":\"MYSQL_ALLOW_EMPTY_PASSWORD\"}":{".":{},"f:value":{}}}}}}}},"f:data":{"f:master.cnf":{}}}`)}}}
	for _, m := range managers {
		name, fields, _ := strings.Cut(m, "=")
		entries = append(entries, metav1.ManagedFieldsEntry{Manager: name, Operation: metav1.ManagedFieldsOperationUpdate, FieldsType: "FieldsV1",
			FieldsV1: &metav1.FieldsV1{Raw: []byte(fields)}})
	}
	live.SetManagedFields(entries)
	return live
}

func set(m map[string]any, value any, path ...string) {
	for _, p := range path[:len(path)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	m[path[len(path)-1]] = value
}

func container(m map[string]any, name string) map[string]any {
	for _, c := range m["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any) {
		if c.(map[string]any)["name"] == name {
			return c.(map[string]any)
		}
	}
	return nil
}

// snapshotOf makes a snapshot where every desired object is live as given.
func snapshotOf(desired []*unstructured.Unstructured, live ...*unstructured.Unstructured) Snapshot {
	s := Snapshot{Now: now, Desired: desired, Live: map[Ref]*unstructured.Unstructured{}}
	for _, l := range live {
		s.Live[RefOf(l)] = l
	}
	return s
}

type podOpt func(*corev1.Pod)

func pod(name string, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "mysql"},
			CreationTimestamp: metav1.NewTime(now.Add(-time.Hour))},
		Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "mysql"}, {Name: "xtrabackup"}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data-" + name}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning,
			Conditions:        []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(now.Add(-time.Hour))}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "mysql", Ready: true}, {Name: "xtrabackup", Ready: true}}},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func notReadySince(d time.Duration) podOpt {
	return func(p *corev1.Pod) {
		p.Status.Conditions[0].Status = corev1.ConditionFalse
		p.Status.Conditions[0].LastTransitionTime = metav1.NewTime(now.Add(-d))
		p.Status.ContainerStatuses[0].Ready = false
	}
}

func pending(age time.Duration) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.NodeName = ""
		p.Status.Phase = corev1.PodPending
		p.CreationTimestamp = metav1.NewTime(now.Add(-age))
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Message: "0/3 nodes are available"}}
	}
}

func claim(name, volume string, phase corev1.PersistentVolumeClaimPhase, size string) *corev1.PersistentVolumeClaim {
	class := "mysql-gp2"
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, CreationTimestamp: metav1.NewTime(now.Add(-time.Hour))},
		Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: &class, VolumeName: volume,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}}},
		Status: corev1.PersistentVolumeClaimStatus{Phase: phase},
	}
}

func volume(name, claimName string, phase corev1.PersistentVolumePhase, policy corev1.PersistentVolumeReclaimPolicy) *corev1.PersistentVolume {
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{StorageClassName: "mysql-gp2", PersistentVolumeReclaimPolicy: policy,
			Capacity: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("10Gi")}},
		Status: corev1.PersistentVolumeStatus{Phase: phase},
	}
	if claimName != "" {
		pv.Spec.ClaimRef = &corev1.ObjectReference{Namespace: ns, Name: claimName}
	}
	return pv
}

func gp2() *storagev1.StorageClass {
	wffc := storagev1.VolumeBindingWaitForFirstConsumer
	del := corev1.PersistentVolumeReclaimDelete
	return &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "mysql-gp2"}, Provisioner: "ebs.csi.aws.com",
		VolumeBindingMode: &wffc, ReclaimPolicy: &del}
}

// summary renders findings as "code object" lines, for comparing.
func summary(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, string(f.Code)+" "+f.Object.String())
	}
	return out
}

func attrs(f Finding) map[string]string {
	m := map[string]string{}
	for _, a := range f.Attrs {
		m[a.Key] = a.Value.String()
	}
	return m
}
