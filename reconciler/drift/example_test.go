package drift_test

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/gitopsd/gitopsd/reconciler/drift"
)

func ExampleCheck() {
	configMap := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "mysql-config", "namespace": "mysql"},
		"data":     map[string]any{"binlog-format": "ROW"},
	}}
	service := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Service",
		"metadata": map[string]any{"name": "mysql-read", "namespace": "mysql"},
	}}
	// Someone ran kubectl edit on the ConfigMap and deleted the Service.
	live := configMap.DeepCopy()
	live.Object["data"] = map[string]any{"binlog-format": "MIXED"}
	live.SetManagedFields([]metav1.ManagedFieldsEntry{{Manager: "kubectl-edit", Operation: metav1.ManagedFieldsOperationUpdate,
		FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:data":{"f:binlog-format":{}}}`)}}})

	findings := drift.Check(drift.Snapshot{
		Now:     time.Date(2026, 11, 26, 21, 20, 0, 0, time.UTC),
		Desired: []*unstructured.Unstructured{configMap, service},
		Live:    map[drift.Ref]*unstructured.Unstructured{drift.RefOf(live): live},
	}, drift.Options{})
	for _, f := range findings {
		fmt.Printf("%s %s: %s\n", f.Code, f.Object, f.Detail)
	}
	// Output:
	// object-drift ConfigMap/mysql/mysql-config: ConfigMap/mysql/mysql-config data.binlog-format is MIXED in the cluster, git says ROW (changed by kubectl-edit)
	// object-missing Service/mysql/mysql-read: Service/mysql/mysql-read is declared in git but missing from the cluster
}

func ExampleBook() {
	start := time.Date(2026, 11, 26, 21, 20, 0, 0, time.UTC)
	notReady := drift.Finding{Code: drift.PodNotReady, Object: drift.Ref{Kind: "Pod", Namespace: "mysql", Name: "mysql-1"},
		Detail: "pod mysql-1 of StatefulSet/mysql/mysql is Running but not Ready", Grace: 30 * time.Second}

	book := drift.NewBook(10 * time.Minute)
	for _, step := range []struct {
		after    time.Duration
		findings []drift.Finding
	}{
		{0, []drift.Finding{notReady}},                // seen, inside its grace
		{30 * time.Second, []drift.Finding{notReady}}, // lasted its grace
		{time.Minute, []drift.Finding{notReady}},      // already reported
		{2 * time.Minute, nil},                        // gone
	} {
		for _, ev := range book.Observe(start.Add(step.after), step.findings) {
			fmt.Printf("+%s %s %s %s\n", step.after, ev.Kind, ev.Finding.Code, ev.Finding.Object)
		}
		if due, ok := book.NextDue(); ok {
			fmt.Printf("+%s next check due at +%s\n", step.after, due.Sub(start))
		}
	}
	// Output:
	// +0s next check due at +30s
	// +30s detected pod-not-ready Pod/mysql/mysql-1
	// +30s next check due at +10m30s
	// +1m0s next check due at +10m30s
	// +2m0s resolved pod-not-ready Pod/mysql/mysql-1
}
