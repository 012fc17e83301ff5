package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/restmapper"

	"github.com/gitopsd/gitopsd/reconciler"
)

// releaseNamespace deletes namespace ns when the test ends. The three
// simulated nodes have room for about twenty MySQL pods, so each test gives
// its stack's CPU back to the tests after it. The test's other cleanups
// (registered later, run earlier) stop its daemon first.
func releaseNamespace(t *testing.T, ns string) {
	t.Cleanup(func() {
		err := env.cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("release namespace %s: %v", ns, err)
		}
	})
}

// applyAll server-side applies objs in order with the given field manager, as
// `kubectl apply --server-side` would. dryRun validates without persisting.
func applyAll(ctx context.Context, t *testing.T, objs []*unstructured.Unstructured, manager string, dryRun bool) error {
	t.Helper()
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(env.cs.Discovery()))
	for _, obj := range objs {
		ref := reconciler.RefOf(obj)
		gvk := obj.GroupVersionKind()
		mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("%s: %w", ref, err)
		}
		data, err := json.Marshal(obj)
		if err != nil {
			return fmt.Errorf("%s: %w", ref, err)
		}
		opts := metav1.PatchOptions{FieldManager: manager, Force: new(true)}
		if dryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		ri := env.dyn.Resource(mapping.Resource)
		var res interface {
			Patch(context.Context, string, types.PatchType, []byte, metav1.PatchOptions, ...string) (*unstructured.Unstructured, error)
		} = ri
		if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
			res = ri.Namespace(obj.GetNamespace())
		}
		if _, err := res.Patch(ctx, obj.GetName(), types.ApplyPatchType, data, opts); err != nil {
			return fmt.Errorf("%s: apply: %w", ref, err)
		}
	}
	return nil
}

// eventually polls check until it returns nil or the deadline passes, then
// fails the test with check's last error.
func eventually(t *testing.T, timeout time.Duration, what string, check func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	var last error
	for {
		if last = check(ctx); last == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not true within %s: %v", what, timeout, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
