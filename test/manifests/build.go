package manifests

import (
	"context"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/gitopsd/gitopsd/kustomize"
)

// Build renders the kustomization at path inside root with the daemon's own
// builder (package kustomize: confined to root, plugins off, apply order),
// so that the tests apply exactly what gitopsd would.
func Build(root, path string) ([]*unstructured.Unstructured, error) {
	res, err := kustomize.NewBuilder(kustomize.Options{InProcess: true}).Build(context.Background(), root, path)
	if err != nil {
		return nil, err
	}
	return res.Objects, nil
}
