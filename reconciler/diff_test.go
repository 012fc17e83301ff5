package reconciler

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDiffObjects(t *testing.T) {
	sts := func(replicas int64, rv string) map[string]any {
		return map[string]any{
			"apiVersion": "apps/v1", "kind": "StatefulSet",
			"metadata": map[string]any{"name": "mysql", "resourceVersion": rv,
				"managedFields": []any{map[string]any{"manager": rv}}},
			"spec": map[string]any{"replicas": replicas,
				"template": map[string]any{"spec": map[string]any{"containers": []any{
					map[string]any{"name": "mysql", "image": "mysql:5.7.44"}}}}},
		}
	}
	secret := func(data map[string]any) map[string]any {
		return map[string]any{"apiVersion": "v1", "kind": "Secret", "metadata": map[string]any{"name": "s"}, "data": data}
	}
	withImage := sts(2, "1")
	withImage["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)["image"] = "mysql:5.7.45"

	tests := map[string]struct {
		live, desired map[string]any
		want          []FieldDiff
	}{
		"equal but for bookkeeping": {live: sts(2, "1"), desired: sts(2, "2")},
		"status and the revision annotation are not drift": {
			live: func() map[string]any {
				o := sts(2, "1")
				o["status"] = map[string]any{"readyReplicas": int64(1)}
				o["metadata"].(map[string]any)["annotations"] = map[string]any{RevisionAnnotation: "main@sha1:aaa"}
				return o
			}(),
			desired: func() map[string]any {
				o := sts(2, "1")
				o["status"] = map[string]any{"readyReplicas": int64(2)}
				o["metadata"].(map[string]any)["annotations"] = map[string]any{RevisionAnnotation: "main@sha1:bbb"}
				return o
			}(),
		},
		"replicas": {
			live: sts(3, "1"), desired: sts(2, "2"),
			want: []FieldDiff{{Path: "spec.replicas", Live: "3", Desired: "2"}},
		},
		"a container image inside a list": {
			live: sts(2, "1"), desired: withImage,
			want: []FieldDiff{{Path: "spec.template.spec.containers[0].image", Live: "mysql:5.7.44", Desired: "mysql:5.7.45"}},
		},
		"secret values never shown": {
			live:    secret(map[string]any{"password": "b2xk"}),
			desired: secret(map[string]any{"password": "bmV3", "user": "cm9vdA=="}),
			want: []FieldDiff{
				{Path: "data.password", Live: "(redacted)", Desired: "(redacted)"},
				{Path: "data.user", Live: "", Desired: "(redacted)"},
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, DiffObjects(tc.live, tc.desired)); diff != "" {
				t.Errorf("DiffObjects (-want +got):\n%s", diff)
			}
		})
	}
}
