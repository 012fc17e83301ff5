package main

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/gitopsd/gitopsd/test/manifests"
)

// floorConcurrency is how many applies the floor keeps in flight: gitopsd's
// default --apply-concurrency.
const floorConcurrency = 8

// floor measures the least time any tool can take to apply the case in dir
// on this cluster: its objects, built beforehand, written by
// floorConcurrency parallel server-side applies (cluster-scoped objects
// first, as their namespaces must exist), with no start-up, no validation
// and nothing read. Wall time and the control plane's CPU time only (it
// runs in the bench's own process).
func (b *bench) floor(ctx context.Context, dir string) (measurement, error) {
	objs, err := manifests.Build(dir, ".")
	if err != nil {
		return measurement{}, err
	}
	before, err := b.cluster.CPUTime()
	if err != nil {
		return measurement{}, err
	}
	start := time.Now()
	for _, clusterScoped := range []bool{true, false} {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(floorConcurrency)
		for _, obj := range objs {
			if (obj.GetNamespace() == "") != clusterScoped {
				continue
			}
			g.Go(func() error { return b.apply(gctx, obj) })
		}
		if err := g.Wait(); err != nil {
			return measurement{}, err
		}
	}
	m := measurement{wall: time.Since(start)}
	after, err := b.cluster.CPUTime()
	m.cluster = after - before
	return m, err
}

// apply server-side applies one object as kubectl apply --server-side does.
func (b *bench) apply(ctx context.Context, obj *unstructured.Unstructured) error {
	gvk := obj.GroupVersionKind()
	mapping, err := b.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return err
	}
	data, err := obj.MarshalJSON()
	if err != nil {
		return err
	}
	res := b.dyn.Resource(mapping.Resource)
	force := true
	opts := metav1.PatchOptions{FieldManager: "bench-floor", Force: &force, FieldValidation: metav1.FieldValidationStrict}
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		_, err = res.Namespace(obj.GetNamespace()).Patch(ctx, obj.GetName(), types.ApplyPatchType, data, opts)
	} else {
		_, err = res.Patch(ctx, obj.GetName(), types.ApplyPatchType, data, opts)
	}
	if err != nil {
		return fmt.Errorf("%s %s/%s: %w", gvk.Kind, obj.GetNamespace(), obj.GetName(), err)
	}
	return nil
}
