package reconciler

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// countingMapper counts the RESTMapping calls that reach it.
type countingMapper struct {
	*meta.DefaultRESTMapper
	calls int
}

func (c *countingMapper) RESTMapping(gk schema.GroupKind, versions ...string) (*meta.RESTMapping, error) {
	c.calls++
	return c.DefaultRESTMapper.RESTMapping(gk, versions...)
}

func (c *countingMapper) Reset() {}

func TestCachedMapper(t *testing.T) {
	deployments := schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
	widgets := schema.GroupVersionKind{Group: "example.com", Version: "v1", Kind: "Widget"}
	inner := &countingMapper{DefaultRESTMapper: meta.NewDefaultRESTMapper([]schema.GroupVersion{deployments.GroupVersion()})}
	inner.Add(deployments, meta.RESTScopeNamespace)
	m := NewCachedMapper(inner)

	for range 3 {
		got, err := m.RESTMapping(deployments.GroupKind(), "v1")
		if err != nil || got.Resource.Resource != "deployments" {
			t.Fatalf("RESTMapping(Deployment) = %v, %v", got, err)
		}
	}
	if inner.calls != 1 {
		t.Errorf("3 lookups of one kind reached the mapper %d times, want 1", inner.calls)
	}
	if _, err := m.RESTMapping(deployments.GroupKind()); err != nil || inner.calls != 2 {
		t.Errorf("other versions are another question: calls %d, err %v", inner.calls, err)
	}

	// A kind not served yet is asked again, and maps once its CRD exists.
	if _, err := m.RESTMapping(widgets.GroupKind(), "v1"); !meta.IsNoMatchError(err) {
		t.Fatalf("unknown kind: %v, want a no-match error", err)
	}
	inner.Add(widgets, meta.RESTScopeNamespace)
	if got, err := m.RESTMapping(widgets.GroupKind(), "v1"); err != nil || got.Resource.Resource != "widgets" {
		t.Errorf("Widget after its CRD: %v, %v", got, err)
	}

	m.Reset()
	calls := inner.calls
	if _, err := m.RESTMapping(deployments.GroupKind(), "v1"); err != nil || inner.calls != calls+1 {
		t.Errorf("after Reset the mapper is asked again: calls %d -> %d, err %v", calls, inner.calls, err)
	}
}
