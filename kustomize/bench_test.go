package kustomize

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkBuild1000 builds a kustomization of 1,000 objects (ConfigMaps,
// Services and Deployments, as `make bench` generates), in a worker process
// as the daemon does and in this process (what isolation costs; `make
// bench` reports the same comparison).
func BenchmarkBuild1000(b *testing.B) {
	dir := b.TempDir()
	var objs strings.Builder
	for i := range 1000 {
		objs.WriteString("---\n")
		switch i % 3 {
		case 0:
			fmt.Fprintf(&objs, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-%d\n  namespace: bench\ndata:\n  key: value-%d\n", i, i)
		case 1:
			fmt.Fprintf(&objs, "apiVersion: v1\nkind: Service\nmetadata:\n  name: svc-%d\n  namespace: bench\nspec:\n  selector: {app: app-%d}\n  ports:\n  - port: 80\n", i, i)
		case 2:
			fmt.Fprintf(&objs, "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-%d\n  namespace: bench\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: app-%d}}\n  template:\n    metadata: {labels: {app: app-%d}}\n    spec:\n      containers:\n      - {name: app, image: registry.k8s.io/pause:3.10}\n", i, i, i)
		}
	}
	writeFiles(b, dir, map[string]string{
		"objects.yaml":       objs.String(),
		"kustomization.yaml": "resources:\n- objects.yaml\n",
	})
	for _, bc := range []struct {
		name string
		opts Options
	}{{"worker", Options{}}, {"in-process", Options{InProcess: true}}} {
		b.Run(bc.name, func(b *testing.B) {
			builder := NewBuilder(bc.opts)
			b.ReportAllocs()
			for b.Loop() {
				res, err := builder.Build(b.Context(), dir, ".")
				if err != nil {
					b.Fatal(err)
				}
				if len(res.Objects) != 1000 {
					b.Fatalf("built %d objects, want 1000", len(res.Objects))
				}
			}
		})
	}
}
