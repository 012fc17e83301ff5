package kustomize

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// obj returns an object with apiVersion, kind, namespace and name.
func obj(apiVersion, kind, namespace, name string) *unstructured.Unstructured {
	o := &unstructured.Unstructured{}
	o.SetAPIVersion(apiVersion)
	o.SetKind(kind)
	o.SetNamespace(namespace)
	o.SetName(name)
	return o
}

func TestRank(t *testing.T) {
	tests := map[string]struct {
		obj  *unstructured.Unstructured
		want int
	}{
		"Namespace":                   {obj("v1", "Namespace", "", "a"), rankNamespace},
		"CRD":                         {obj("apiextensions.k8s.io/v1", "CustomResourceDefinition", "", "a"), rankCRD},
		"StorageClass":                {obj("storage.k8s.io/v1", "StorageClass", "", "a"), rankCluster},
		"ClusterRole":                 {obj("rbac.authorization.k8s.io/v1", "ClusterRole", "", "a"), rankCluster},
		"PersistentVolume":            {obj("v1", "PersistentVolume", "", "a"), rankCluster},
		"PriorityClass":               {obj("scheduling.k8s.io/v1", "PriorityClass", "", "a"), rankCluster},
		"unknown kind, no namespace":  {obj("example.com/v1", "Widget", "", "a"), rankCluster},
		"unknown kind, namespaced":    {obj("example.com/v1", "Widget", "ns", "a"), rankOther},
		"ResourceQuota":               {obj("v1", "ResourceQuota", "ns", "a"), rankNamespacePolicy},
		"ServiceAccount":              {obj("v1", "ServiceAccount", "ns", "a"), rankServiceAccount},
		"Secret":                      {obj("v1", "Secret", "ns", "a"), rankSecret},
		"ConfigMap":                   {obj("v1", "ConfigMap", "ns", "a"), rankConfigMap},
		"ConfigMap without namespace": {obj("v1", "ConfigMap", "", "a"), rankConfigMap},
		"Role":                        {obj("rbac.authorization.k8s.io/v1", "Role", "ns", "a"), rankRBAC},
		"RoleBinding":                 {obj("rbac.authorization.k8s.io/v1", "RoleBinding", "ns", "a"), rankRBAC},
		"Service":                     {obj("v1", "Service", "ns", "a"), rankService},
		"Knative Service is not core": {obj("serving.knative.dev/v1", "Service", "ns", "a"), rankOther},
		"PVC":                         {obj("v1", "PersistentVolumeClaim", "ns", "a"), rankPVC},
		"Deployment":                  {obj("apps/v1", "Deployment", "ns", "a"), rankWorkload},
		"StatefulSet":                 {obj("apps/v1", "StatefulSet", "ns", "a"), rankWorkload},
		"CronJob":                     {obj("batch/v1", "CronJob", "ns", "a"), rankWorkload},
		"Pod":                         {obj("v1", "Pod", "ns", "a"), rankWorkload},
		"PodDisruptionBudget":         {obj("policy/v1", "PodDisruptionBudget", "ns", "a"), rankOther},
		"Ingress":                     {obj("networking.k8s.io/v1", "Ingress", "ns", "a"), rankOther},
		"NetworkPolicy":               {obj("networking.k8s.io/v1", "NetworkPolicy", "ns", "a"), rankOther},
		"MutatingWebhookConfiguration": {
			obj("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", "", "a"), rankWebhook,
		},
		"ValidatingWebhookConfiguration": {
			obj("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", "", "a"), rankWebhook,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := Rank(tc.obj); got != tc.want {
				t.Errorf("Rank = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestSort(t *testing.T) {
	in := []*unstructured.Unstructured{
		obj("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", "", "check"),
		obj("policy/v1", "PodDisruptionBudget", "db", "mysql"),
		obj("apps/v1", "StatefulSet", "db", "mysql"),
		obj("v1", "Service", "db", "mysql-read"),
		obj("v1", "ConfigMap", "db", "mysql"),
		obj("v1", "Service", "db", "mysql"),
		obj("example.com/v1", "Widget", "db", "w"),
		obj("v1", "PersistentVolumeClaim", "db", "data"),
		obj("rbac.authorization.k8s.io/v1", "RoleBinding", "db", "rb"),
		obj("v1", "Secret", "db", "s"),
		obj("v1", "ServiceAccount", "db", "sa"),
		obj("storage.k8s.io/v1", "StorageClass", "", "gp2"),
		obj("example.com/v1", "ClusterWidget", "", "cw"),
		obj("apiextensions.k8s.io/v1", "CustomResourceDefinition", "", "widgets.example.com"),
		obj("v1", "Namespace", "", "db"),
	}
	want := []string{
		"Namespace/db",
		"CustomResourceDefinition/widgets.example.com",
		"StorageClass/gp2",
		"ClusterWidget/cw",
		"ServiceAccount/sa",
		"Secret/s",
		"ConfigMap/mysql",
		"RoleBinding/rb",
		"Service/mysql-read", // equal ranks keep their order
		"Service/mysql",
		"PersistentVolumeClaim/data",
		"StatefulSet/mysql",
		"PodDisruptionBudget/mysql",
		"Widget/w",
		"ValidatingWebhookConfiguration/check",
	}
	before := ids(in)
	got := Sort(in)
	if diff := cmp.Diff(want, ids(got)); diff != "" {
		t.Errorf("Sort (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(before, ids(in)); diff != "" {
		t.Errorf("Sort changed its argument (-want +got):\n%s", diff)
	}
}
