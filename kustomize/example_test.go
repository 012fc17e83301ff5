package kustomize_test

import (
	"context"
	"fmt"

	"github.com/gitopsd/gitopsd/kustomize"
)

// ExampleBuilder_Build renders an overlay of a snapshot directory and lists
// its objects in apply order. The fixture lists them in reverse.
func ExampleBuilder_Build() {
	b := kustomize.NewBuilder(kustomize.Options{})
	res, err := b.Build(context.Background(), "testdata", "app/overlays/dev")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, obj := range res.Objects {
		fmt.Println(obj.GetKind(), obj.GetName())
	}
	// Output:
	// Namespace app
	// ClusterRole web-reader
	// ConfigMap web
	// Service web
	// Deployment web
	// ValidatingWebhookConfiguration web-check
}
