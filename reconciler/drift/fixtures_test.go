package drift

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"
)

// now is the clock of every fixture: a few minutes after the objects in
// testdata/mysql were created.
var now = time.Date(2026, 11, 26, 21, 20, 0, 0, time.UTC)

const ns = "mysql"

// parse reads a YAML stream of objects. Each document goes through JSON
// into Unstructured, so numbers are int64 as in an informer's cache.
func parse(t *testing.T, stream string) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	for doc := range strings.SplitSeq(stream, "\n---\n") {
		data, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		if string(data) == "null" {
			continue // the comment before the first document
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(data); err != nil {
			t.Fatal(err)
		}
		out = append(out, u)
	}
	return out
}

// fixtures caches the parsed files of testdata/mysql; load hands out
// copies.
var fixtures sync.Map // file name -> []*unstructured.Unstructured

func load(t *testing.T, name string) []*unstructured.Unstructured {
	t.Helper()
	cached, ok := fixtures.Load(name)
	if !ok {
		data, err := os.ReadFile(filepath.Join("testdata", "mysql", name))
		if err != nil {
			t.Fatal(err)
		}
		cached, _ = fixtures.LoadOrStore(name, parse(t, string(data)))
	}
	var out []*unstructured.Unstructured
	for _, u := range cached.([]*unstructured.Unstructured) {
		out = append(out, u.DeepCopy())
	}
	return out
}

func typed[T any](t *testing.T, u *unstructured.Unstructured) *T {
	t.Helper()
	var out T
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

// mysql returns the steady state of the MySQL stack of base/ at now:
// desired and live objects, two Running and Ready pods, their Bound claims
// and volumes, as testdata/mysql holds them. Nothing in it is drift.
func mysql(t *testing.T) Snapshot {
	t.Helper()
	s := Snapshot{Now: now, Desired: load(t, "desired.yaml"), Live: map[Ref]*unstructured.Unstructured{}}
	for _, u := range load(t, "live.yaml") {
		s.Live[RefOf(u)] = u
		if u.GetKind() == "StorageClass" {
			s.StorageClasses = append(s.StorageClasses, typed[storagev1.StorageClass](t, u))
		}
	}
	for _, u := range load(t, "pods.yaml") {
		s.Pods = append(s.Pods, typed[corev1.Pod](t, u))
	}
	for _, u := range load(t, "volumes.yaml") {
		switch u.GetKind() {
		case "PersistentVolumeClaim":
			s.PVCs = append(s.PVCs, typed[corev1.PersistentVolumeClaim](t, u))
		case "PersistentVolume":
			s.PVs = append(s.PVs, typed[corev1.PersistentVolume](t, u))
		}
	}
	return s
}

var statefulSetRef = Ref{Group: "apps", Kind: "StatefulSet", Namespace: ns, Name: "mysql"}

// desiredObj returns the object of s.Desired that ref names.
func desiredObj(t *testing.T, s Snapshot, ref Ref) *unstructured.Unstructured {
	t.Helper()
	for _, obj := range s.Desired {
		if RefOf(obj) == ref {
			return obj
		}
	}
	t.Fatalf("%s is not desired", ref)
	return nil
}

// setField sets a field of obj; it fails the test if a field on the way
// is not a map.
func setField(t *testing.T, obj map[string]any, value any, path ...string) {
	t.Helper()
	if err := unstructured.SetNestedField(obj, value, path...); err != nil {
		t.Fatal(err)
	}
}

// container returns a container of a StatefulSet's pod template, to edit
// in place.
func container(t *testing.T, sts *unstructured.Unstructured, name string) map[string]any {
	t.Helper()
	cs, _, _ := unstructured.NestedFieldNoCopy(sts.Object, "spec", "template", "spec", "containers")
	for _, c := range cs.([]any) {
		if c.(map[string]any)["name"] == name {
			return c.(map[string]any)
		}
	}
	t.Fatalf("no container %s", name)
	return nil
}

// updateBy records that manager changed the fields of fieldsV1 with an
// Update, as the API server does: the fields move to a new managedFields
// entry and leave every other manager's set.
func updateBy(t *testing.T, obj *unstructured.Unstructured, manager, subresource, fieldsV1 string) {
	t.Helper()
	removed(t, obj, fieldsV1)
	obj.SetManagedFields(append(obj.GetManagedFields(), metav1.ManagedFieldsEntry{
		Manager: manager, Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: obj.GetAPIVersion(),
		Time: &metav1.Time{Time: now}, FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(fieldsV1)},
		Subresource: subresource}))
}

// removed records that the fields of fieldsV1 are gone from the object:
// no manager owns them any more.
func removed(t *testing.T, obj *unstructured.Unstructured, fieldsV1 string) {
	t.Helper()
	var gone map[string]any
	if err := json.Unmarshal([]byte(fieldsV1), &gone); err != nil {
		t.Fatal(err)
	}
	entries := obj.GetManagedFields()
	for i := range entries {
		var set map[string]any
		if err := json.Unmarshal(entries[i].FieldsV1.Raw, &set); err != nil {
			t.Fatal(err)
		}
		disown(set, gone)
		entries[i].FieldsV1.Raw, _ = json.Marshal(set)
	}
	obj.SetManagedFields(entries)
}

func disown(set, taken map[string]any) {
	for k, v := range taken {
		own, ok := set[k].(map[string]any)
		if !ok {
			continue
		}
		if sub, _ := v.(map[string]any); len(sub) > 0 {
			disown(own, sub)
		} else {
			delete(set, k)
		}
	}
}

func findPod(t *testing.T, s Snapshot, name string) *corev1.Pod {
	t.Helper()
	for _, p := range s.Pods {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("no pod %s", name)
	return nil
}

func findClaim(t *testing.T, s Snapshot, name string) *corev1.PersistentVolumeClaim {
	t.Helper()
	for _, c := range s.PVCs {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no claim %s", name)
	return nil
}

// volumeOf returns the PersistentVolume bound to a claim.
func volumeOf(t *testing.T, s Snapshot, claim string) *corev1.PersistentVolume {
	t.Helper()
	for _, pv := range s.PVs {
		if pv.Spec.ClaimRef != nil && pv.Spec.ClaimRef.Name == claim {
			return pv
		}
	}
	t.Fatalf("no volume for %s", claim)
	return nil
}

// withoutPod removes a pod from the snapshot.
func withoutPod(s *Snapshot, name string) {
	for i, p := range s.Pods {
		if p.Name == name {
			s.Pods = append(s.Pods[:i:i], s.Pods[i+1:]...)
			return
		}
	}
}

// leftBehind adds what a scale-down from 3 to 2 leaves: claim
// data-mysql-<ordinal> and its volume, copies of data-mysql-1's.
func leftBehind(t *testing.T, s *Snapshot, ordinal int) (*corev1.PersistentVolumeClaim, *corev1.PersistentVolume) {
	t.Helper()
	name := fmt.Sprintf("data-mysql-%d", ordinal)
	pvc, pv := findClaim(t, *s, "data-mysql-1").DeepCopy(), volumeOf(t, *s, "data-mysql-1").DeepCopy()
	pvc.Name, pvc.UID = name, types.UID(fmt.Sprintf("6c0e1a4e-0000-4000-8000-%012d", ordinal))
	pv.Name = "pvc-" + string(pvc.UID)
	pvc.Spec.VolumeName, pv.Spec.ClaimRef.Name, pv.Spec.ClaimRef.UID = pv.Name, name, pvc.UID
	s.PVCs, s.PVs = append(s.PVCs, pvc), append(s.PVs, pv)
	return pvc, pv
}

// render shows a finding on one line for comparing: code, object, its
// attributes in order, then grace and age (now - Since) when set.
func render(f Finding) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", f.Code, f.Object)
	for _, a := range f.Attrs {
		fmt.Fprintf(&b, " %s=%s", a.Key, a.Value)
	}
	if f.Grace != 0 {
		fmt.Fprintf(&b, " grace=%s", f.Grace)
	}
	if !f.Since.IsZero() {
		fmt.Fprintf(&b, " age=%s", now.Sub(f.Since))
	}
	return b.String()
}

func renderAll(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, render(f))
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

// attrList makes string attributes from key, value pairs.
func attrList(kv ...string) []slog.Attr {
	var out []slog.Attr
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, slog.String(kv[i], kv[i+1]))
	}
	return out
}
