package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"

	"github.com/gitopsd/gitopsd/reconciler"
	"github.com/gitopsd/gitopsd/test/manifests"
)

// fixedSource serves whatever snapshot the test sets.
type fixedSource struct{ snap reconciler.Snapshot }

func (s *fixedSource) Fetch(context.Context) (reconciler.Snapshot, error) { return s.snap, nil }
func (s *fixedSource) String() string                                     { return "test:" + s.snap.Dir }

// writeCounter counts requests that change state (everything but reads and
// server-side dry-runs) and reads of single objects (GETs without a label
// selector).
type writeCounter struct {
	next          http.RoundTripper
	writes, reads atomic.Int64
}

func (w *writeCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	switch req.Method {
	case http.MethodGet, http.MethodHead:
		if req.URL.Query().Get("labelSelector") == "" {
			w.reads.Add(1)
		}
	default:
		if req.URL.Query().Get("dryRun") == "" {
			w.writes.Add(1)
		}
	}
	return w.next.RoundTrip(req)
}

// stackIn builds an overlay of the repo with its objects moved into namespace
// ns, so that each test has its own copy of the stack.
func stackIn(ns string) reconciler.BuildFunc {
	return func(ctx context.Context, dir string) ([]*unstructured.Unstructured, error) {
		objs, err := manifests.Build(filepath.Dir(filepath.Dir(dir)), filepath.Join(filepath.Base(filepath.Dir(dir)), filepath.Base(dir)))
		if err != nil {
			return nil, err
		}
		for _, obj := range objs {
			switch {
			case obj.GetKind() == "Namespace":
				obj.SetName(ns)
			case obj.GetNamespace() != "":
				obj.SetNamespace(ns)
			}
		}
		return objs, nil
	}
}

// overlayCopy copies base/ and overlays/ of the repository into a temporary
// tree the test may edit, and returns the path of overlays/name in it.
func overlayCopy(t *testing.T, name string) string {
	t.Helper()
	root, err := manifests.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	if err := os.CopyFS(filepath.Join(dst, "base"), os.DirFS(filepath.Join(root, "base"))); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(filepath.Join(dst, "overlays"), os.DirFS(filepath.Join(root, "overlays"))); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dst, "overlays", name)
}

func newSyncer(t *testing.T, src reconciler.Source, ns string, counter *writeCounter) *reconciler.Syncer {
	t.Helper()
	return newSyncerWithBuild(t, src, ns, counter, stackIn(ns))
}

func newSyncerWithBuild(t *testing.T, src reconciler.Source, ns string, counter *writeCounter, build reconciler.BuildFunc) *reconciler.Syncer {
	t.Helper()
	releaseNamespace(t, ns)
	cfg := env.cluster.RESTConfig()
	cfg.QPS, cfg.Burst = 100, 200
	if counter != nil {
		cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { counter.next = rt; return counter }
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	disco, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disco))
	applier := reconciler.NewApplier(dyn, mapper, reconciler.ApplierOptions{})
	inv := reconciler.NewInventory(cs, "gitopsd", "e2e-"+ns)
	return reconciler.NewSyncer(src, build, applier, inv, reconciler.SyncOptions{HealthInterval: 200 * time.Millisecond})
}

func TestSync(t *testing.T) {
	const ns = "sync-e2e"
	dir := overlayCopy(t, "dev")
	src := &fixedSource{snap: reconciler.Snapshot{Dir: dir, Revision: "r1"}}
	counter := &writeCounter{}
	syncer := newSyncer(t, src, ns, counter)
	s := syncer
	ctx := t.Context()

	res, err := s.Sync(ctx)
	if err != nil {
		t.Fatalf("first sync: %v", err)
	}
	// The StorageClass is cluster scoped and other tests of the package
	// apply it too; everything in the test's namespace is new.
	for _, c := range res.Changes {
		if c.Ref.Namespace == ns && c.Action != reconciler.Created {
			t.Errorf("first sync: %s %s, want created", c.Ref, c.Action)
		}
	}
	if len(res.Changes) != 6 {
		t.Errorf("first sync touched %d objects, want 6: %+v", len(res.Changes), res.Changes)
	}
	sts, err := env.cs.AppsV1().StatefulSets(ns).Get(ctx, "mysql", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sts.Status.ReadyReplicas != 2 || sts.Annotations[reconciler.RevisionAnnotation] != "r1" {
		t.Errorf("after the first sync: ready %d, revision %q", sts.Status.ReadyReplicas, sts.Annotations[reconciler.RevisionAnnotation])
	}

	t.Run("no-op resync writes nothing", func(t *testing.T) {
		before, readsBefore := counter.writes.Load(), counter.reads.Load()
		res, err := s.Sync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := res.Count(reconciler.Unchanged); got != 6 {
			t.Errorf("resync left %d unchanged, want 6: %+v", got, res.Changes)
		}
		if writes := counter.writes.Load() - before; writes != 0 {
			t.Errorf("no-op resync made %d write requests", writes)
		}
		// The members are read with one LIST per kind; only the inventory
		// and the stack's Namespace (is it new?) are read on their own.
		if reads := counter.reads.Load() - readsBefore; reads > 2 {
			t.Errorf("no-op resync read %d objects one by one, want 2 (the inventory and the Namespace)", reads)
		}
	})

	t.Run("a resync still sees an out-of-band change", func(t *testing.T) {
		// The resync above skipped dry-runs of objects it knew unchanged;
		// a change by someone else must still be found and undone.
		s := &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "mysql", Namespace: ns}, Spec: autoscalingv1.ScaleSpec{Replicas: 3}}
		if _, err := env.cs.AppsV1().StatefulSets(ns).UpdateScale(ctx, "mysql", s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		res, err := syncer.Sync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := res.Count(reconciler.Configured); got != 1 {
			t.Errorf("resync after kubectl scale configured %d objects, want 1: %+v", got, res.Changes)
		}
		sts, err := env.cs.AppsV1().StatefulSets(ns).Get(ctx, "mysql", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if *sts.Spec.Replicas != 2 {
			t.Errorf("replicas %d after the resync, want git's 2", *sts.Spec.Replicas)
		}
		waitStatefulSetReady(t, ns, 2)
	})

	t.Run("an invalid object applies nothing", func(t *testing.T) {
		writeFile(t, filepath.Join(dir, "extra.yaml"), `apiVersion: v1
kind: ConfigMap
metadata:
  name: new-and-valid
  namespace: mysql
data: {a: b}
---
apiVersion: v1
kind: Service
metadata:
  name: broken
  namespace: mysql
spec:
  ports:
  - port: 700000
`)
		appendResource(t, dir, "extra.yaml")
		src.snap.Revision = "r2"
		_, err := s.Sync(ctx)
		var se *reconciler.SyncError
		if !errors.As(err, &se) || se.Stage != reconciler.StageValidate || se.Revision != "r2" {
			t.Fatalf("got %v, want a validate failure at r2", err)
		}
		for _, want := range []string{"Service/" + ns + "/broken", "spec.ports[0].port"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %q", err, want)
			}
		}
		if _, err := env.cs.CoreV1().ConfigMaps(ns).Get(ctx, "new-and-valid", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("the valid ConfigMap of the failed commit exists (err %v)", err)
		}
		sts, _ := env.cs.AppsV1().StatefulSets(ns).Get(ctx, "mysql", metav1.GetOptions{})
		if got := sts.Annotations[reconciler.RevisionAnnotation]; got != "r1" {
			t.Errorf("StatefulSet revision %q after a failed sync, want r1", got)
		}
		os.Remove(filepath.Join(dir, "extra.yaml"))
		removeResource(t, dir, "extra.yaml")
	})

	t.Run("a removed service is pruned", func(t *testing.T) {
		deleteFromBase(t, dir, "service-mysql-read.yaml")
		src.snap.Revision = "r3"
		res, err := s.Sync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := res.Count(reconciler.Pruned); got != 1 {
			t.Errorf("pruned %d, want 1: %+v", got, res.Changes)
		}
		if _, err := env.cs.CoreV1().Services(ns).Get(ctx, "mysql-read", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("Service mysql-read still there (err %v)", err)
		}
	})

	t.Run("a removed StatefulSet is pruned and its claims stay", func(t *testing.T) {
		deleteFromBase(t, dir, "statefulset.yaml")
		// The overlay's replicas entry names the StatefulSet: it goes too.
		editFile(t, filepath.Join(dir, "kustomization.yaml"), func(s string) string {
			return s[:strings.Index(s, "replicas:\n")]
		})
		src.snap.Revision = "r4"
		if _, err := s.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "StatefulSet gone", func(ctx context.Context) error {
			if _, err := env.cs.AppsV1().StatefulSets(ns).Get(ctx, "mysql", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("still there (err %v)", err)
			}
			return nil
		})
		for _, claim := range []string{"data-mysql-0", "data-mysql-1"} {
			if _, err := env.cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, claim, metav1.GetOptions{}); err != nil {
				t.Errorf("PVC %s: %v", claim, err)
			}
		}
	})

	t.Run("an empty build prunes nothing", func(t *testing.T) {
		emptyDir := t.TempDir()
		writeFile(t, filepath.Join(emptyDir, "kustomization.yaml"), "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: []\n")
		src.snap = reconciler.Snapshot{Dir: emptyDir, Revision: "r5"}
		_, err := s.Sync(ctx)
		if !errors.Is(err, reconciler.ErrEmptyBuild) {
			t.Fatalf("got %v, want ErrEmptyBuild", err)
		}
		if _, err := env.cs.CoreV1().ConfigMaps(ns).Get(ctx, "mysql-config", metav1.GetOptions{}); err != nil {
			t.Errorf("ConfigMap mysql-config after an empty build: %v", err)
		}
	})
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func editFile(t *testing.T, path string, edit func(string) string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, edit(string(data)))
}

// appendResource lists file in the overlay's resources.
func appendResource(t *testing.T, overlay, file string) {
	editFile(t, filepath.Join(overlay, "kustomization.yaml"), func(s string) string {
		return strings.Replace(s, "resources:\n", "resources:\n- "+file+"\n", 1)
	})
}

func removeResource(t *testing.T, overlay, file string) {
	editFile(t, filepath.Join(overlay, "kustomization.yaml"), func(s string) string {
		return strings.Replace(s, "- "+file+"\n", "", 1)
	})
}

// deleteFromBase drops a file from the base next to the overlay.
func deleteFromBase(t *testing.T, overlay, file string) {
	base := filepath.Join(overlay, "..", "..", "base")
	removeResource(t, base, file)
	if err := os.Remove(filepath.Join(base, file)); err != nil {
		t.Fatal(err)
	}
}

// TestSyncCRDWithItsResources applies a CustomResourceDefinition and a custom
// resource of it in one commit: the resource cannot be dry-run before its CRD
// exists, so it waits for the CRD to be established.
func TestSyncCRDWithItsResources(t *testing.T) {
	const ns = "crd-e2e"
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "kustomization.yaml"), "resources:\n- crd.yaml\n- widget.yaml\n")
	writeFile(t, filepath.Join(dir, "crd.yaml"), `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.e2e.gitopsd.io
spec:
  group: e2e.gitopsd.io
  names: {kind: Widget, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
`)
	writeFile(t, filepath.Join(dir, "widget.yaml"), "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: "+ns+
		"\n---\napiVersion: e2e.gitopsd.io/v1\nkind: Widget\nmetadata:\n  name: w\n  namespace: "+ns+"\nspec:\n  size: 3\n")
	src := &fixedSource{snap: reconciler.Snapshot{Dir: dir, Revision: "c1"}}
	s := newSyncerWithBuild(t, src, ns, nil, func(ctx context.Context, dir string) ([]*unstructured.Unstructured, error) {
		return manifests.Build(dir, ".")
	})
	res, err := s.Sync(t.Context())
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	if got := res.Count(reconciler.Created); got != 3 {
		t.Errorf("created %d, want 3 (CRD, Namespace, Widget): %+v", got, res.Changes)
	}
	gvr := schema.GroupVersionResource{Group: "e2e.gitopsd.io", Version: "v1", Resource: "widgets"}
	w, err := env.dyn.Resource(gvr).Namespace(ns).Get(t.Context(), "w", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if size, _, _ := unstructured.NestedInt64(w.Object, "spec", "size"); size != 3 {
		t.Errorf("Widget spec.size %d, want 3", size)
	}
}
