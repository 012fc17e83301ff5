package reconciler

import (
	"errors"
	"io"
	"os"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// liveFixtures reads the objects captured from a cluster after a sync of the
// MySQL stack (the drift package's fixtures): managedFields as the API
// server writes them, status included.
func liveFixtures(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	f, err := os.Open("drift/testdata/mysql/live.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if obj != nil {
			objs = append(objs, &unstructured.Unstructured{Object: obj})
		}
	}
	if len(objs) < 5 {
		t.Fatalf("drift/testdata/mysql/live.yaml holds %d objects", len(objs))
	}
	return objs
}

// The Watcher's cache holds trimmed objects; a resync compares their hash
// with the one remembered from an object read from the API. Both must agree,
// or every resync would dry-run everything again.
func TestLiveHashSameForCachedCopy(t *testing.T) {
	for _, obj := range liveFixtures(t) {
		a := obj.GetAnnotations()
		if a == nil {
			a = map[string]string{}
		}
		a[lastAppliedAnnotation] = `{"kind":"x"}`
		obj.SetAnnotations(a)
		cached, err := trimManaged(obj.DeepCopy())
		if err != nil {
			t.Fatal(err)
		}
		before := obj.DeepCopy()
		if liveHash(obj) != liveHash(cached.(*unstructured.Unstructured)) {
			t.Errorf("%s: liveHash of the API object and of its cached copy differ", RefOf(obj))
		}
		if !equality.Semantic.DeepEqual(before, obj) {
			t.Errorf("%s: liveHash changed the object it hashed", RefOf(obj))
		}
	}
}

// What another writer changes still changes the hash: its managedFields
// entry and the value.
func TestLiveHashSeesOtherWriters(t *testing.T) {
	for _, obj := range liveFixtures(t) {
		if obj.GetKind() != "StatefulSet" {
			continue
		}
		before := liveHash(obj)
		scaled := obj.DeepCopy()
		if err := unstructured.SetNestedField(scaled.Object, int64(3), "spec", "replicas"); err != nil {
			t.Fatal(err)
		}
		if liveHash(scaled) == before {
			t.Error("liveHash unchanged by spec.replicas 2 -> 3")
		}
		statusOnly := obj.DeepCopy()
		if err := unstructured.SetNestedField(statusOnly.Object, int64(0), "status", "readyReplicas"); err != nil {
			t.Fatal(err)
		}
		statusOnly.SetResourceVersion("999999")
		if liveHash(statusOnly) != before {
			t.Error("liveHash changed by a status update")
		}
		return
	}
	t.Fatal("no StatefulSet in the fixtures")
}
