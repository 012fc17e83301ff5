package reconciler

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/gitopsd/gitopsd/reconciler/drift"
)

// TestSkipInFlight checks that object-drift is dropped only on objects a
// half-failed sync left at its revision, never on objects that keep the
// revision of an older commit because later commits did not change them.
func TestSkipInFlight(t *testing.T) {
	at := func(name, revision string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion("v1")
		u.SetKind("ConfigMap")
		u.SetNamespace("ns")
		u.SetName(name)
		u.SetAnnotations(map[string]string{RevisionAnnotation: revision})
		return u
	}
	live := map[drift.Ref]*unstructured.Unstructured{}
	for _, u := range []*unstructured.Unstructured{at("old", "main@sha1:r0"), at("current", "main@sha1:r1"), at("partial", "main@sha1:r2")} {
		live[drift.RefOf(u)] = u
	}
	findings := func(names ...string) []drift.Finding {
		var out []drift.Finding
		for _, n := range names {
			out = append(out, drift.Finding{Code: drift.ObjectDrift, Object: drift.Ref{Kind: "ConfigMap", Namespace: "ns", Name: n}})
		}
		return out
	}
	tests := map[string]struct {
		partial string
		want    []drift.Finding
	}{
		"no sync failed half-way: every finding stays": {"", findings("old", "current", "partial")},
		"objects a failed sync reached are skipped":    {"main@sha1:r2", findings("old", "current")},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := skipInFlight(findings("old", "current", "partial"), tc.partial, live)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
