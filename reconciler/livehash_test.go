package reconciler

import (
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
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

// LiveHashes serves a resync from the Watcher's informer of a set's members:
// only once that informer has synced, only for the set it selects, and with
// the same hashes a resync computes from objects read from the API.
func TestWatcherLiveHashes(t *testing.T) {
	var configMaps []unstructured.Unstructured
	for _, obj := range liveFixtures(t) {
		if obj.GetKind() == "ConfigMap" {
			configMaps = append(configMaps, *obj)
		}
	}
	if len(configMaps) == 0 {
		t.Fatal("no ConfigMap in the fixtures")
	}
	resource := schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	ns := configMaps[0].GetNamespace()
	key := watchKey{resource: resource, namespace: ns, managed: true}
	inf := cache.NewSharedIndexInformer(listOnly{&cache.ListWatch{
		ListWithContextFunc: func(context.Context, metav1.ListOptions) (runtime.Object, error) {
			return &unstructured.UnstructuredList{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMapList",
				"metadata": map[string]any{"resourceVersion": "1"}}, Items: configMaps}, nil
		},
		WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) {
			return watch.NewFake(), nil
		},
	}}, &unstructured.Unstructured{}, 0, cache.Indexers{})
	if err := inf.SetTransform(trimManaged); err != nil {
		t.Fatal(err)
	}
	w := NewWatcher(nil, nil, nil, WatcherOptions{})
	w.managedInf[key], w.cacheID = inf, "applyset-1"

	if _, ok := w.LiveHashes(resource, ns, "applyset-1"); ok {
		t.Error("LiveHashes answered before the informer synced")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	go inf.RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("informer did not sync")
	}
	for range 2 { // the second time from the memo
		hashes, ok := w.LiveHashes(resource, ns, "applyset-1")
		if !ok || len(hashes) != len(configMaps) {
			t.Fatalf("LiveHashes = %d hashes, %v; want %d", len(hashes), ok, len(configMaps))
		}
		for i := range configMaps {
			obj := &configMaps[i]
			if hashes[RefOf(obj)] != liveHash(obj) {
				t.Errorf("%s: cached hash differs from the API object's", RefOf(obj))
			}
		}
	}
	if _, ok := w.LiveHashes(resource, ns, "another-set"); ok {
		t.Error("LiveHashes answered for another ApplySet")
	}
	if _, ok := w.LiveHashes(resource, "elsewhere", "applyset-1"); ok {
		t.Error("LiveHashes answered for a namespace it does not watch")
	}
}

// listOnly is a ListWatch the reflector LISTs, then WATCHes: a fake watch
// cannot serve client-go's streaming watch-list.
type listOnly struct{ *cache.ListWatch }

func (listOnly) IsWatchListSemanticsUnSupported() bool { return true }
