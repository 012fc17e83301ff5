package manifests

import (
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// kindRank orders objects for apply: namespaces, then the cluster-scoped
// objects the namespaced ones use, then configuration and services, then the
// workloads that mount and expose them, then the budgets that select their
// pods. Kinds not listed go last, after the PodDisruptionBudgets.
var kindRank = map[string]int{
	"Namespace":           0,
	"StorageClass":        1,
	"ConfigMap":           2,
	"Secret":              2,
	"Service":             2,
	"StatefulSet":         3,
	"PodDisruptionBudget": 4,
}

// rankOf returns the apply rank of kind.
func rankOf(kind string) int {
	if r, ok := kindRank[kind]; ok {
		return r
	}
	return len(kindRank)
}

// Build runs kustomize on the kustomization directory dir and returns the
// objects in apply order (see kindRank). Objects of the same rank keep the
// order kustomize emitted them in, which is the order of the kustomization's
// resources. Plugins are off and files are loaded only from under dir.
func Build(dir string) ([]*unstructured.Unstructured, error) {
	opts := krusty.MakeDefaultOptions()
	// The defaults already disable plugins; say so where a reader looks.
	opts.PluginConfig = types.DisabledPluginConfig()
	resMap, err := krusty.MakeKustomizer(opts).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("%s: kustomize build: %w", dir, err)
	}
	objs := make([]*unstructured.Unstructured, 0, resMap.Size())
	for _, res := range resMap.Resources() {
		// Through JSON so that numbers come out as int64, as unstructured
		// requires for DeepCopy.
		data, err := res.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("%s: %s: encode: %w", dir, res.CurId(), err)
		}
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(data); err != nil {
			return nil, fmt.Errorf("%s: %s: decode: %w", dir, res.CurId(), err)
		}
		objs = append(objs, obj)
	}
	slices.SortStableFunc(objs, func(a, b *unstructured.Unstructured) int {
		return rankOf(a.GetKind()) - rankOf(b.GetKind())
	})
	return objs, nil
}
