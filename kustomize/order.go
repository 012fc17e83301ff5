package kustomize

import (
	"cmp"
	"slices"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Apply ranks, lowest first. An object is applied after everything it may
// refer to: a namespace before what lives in it, a CRD before its custom
// resources, a ConfigMap before the pods that mount it. Admission webhooks
// and policies go last so that a webhook whose backend is in the same build
// cannot reject the objects that start that backend.
const (
	rankNamespace = iota
	rankCRD
	rankCluster         // other cluster-scoped objects, known or guessed
	rankNamespacePolicy // LimitRange, ResourceQuota: they shape the pods created later
	rankServiceAccount
	rankSecret
	rankConfigMap
	rankRBAC // Role, RoleBinding (the cluster-wide ones are rankCluster)
	rankService
	rankPVC
	rankWorkload
	rankOther // namespaced kinds not listed above: PDB, HPA, Ingress, custom resources...
	rankWebhook
)

// kindRanks holds every kind with a fixed rank, keyed by API group and kind
// so that a custom resource that reuses a core kind name (say Knative's
// serving.knative.dev Service) is not mistaken for the core one.
var kindRanks = map[schema.GroupKind]int{
	{Group: "", Kind: "Namespace"}: rankNamespace,

	{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}: rankCRD,

	{Group: "", Kind: "PersistentVolume"}:                                       rankCluster,
	{Group: "", Kind: "Node"}:                                                   rankCluster,
	{Group: "storage.k8s.io", Kind: "StorageClass"}:                             rankCluster,
	{Group: "storage.k8s.io", Kind: "CSIDriver"}:                                rankCluster,
	{Group: "storage.k8s.io", Kind: "CSINode"}:                                  rankCluster,
	{Group: "storage.k8s.io", Kind: "VolumeAttachment"}:                         rankCluster,
	{Group: "storage.k8s.io", Kind: "VolumeAttributesClass"}:                    rankCluster,
	{Group: "snapshot.storage.k8s.io", Kind: "VolumeSnapshotClass"}:             rankCluster,
	{Group: "snapshot.storage.k8s.io", Kind: "VolumeSnapshotContent"}:           rankCluster,
	{Group: "rbac.authorization.k8s.io", Kind: "ClusterRole"}:                   rankCluster,
	{Group: "rbac.authorization.k8s.io", Kind: "ClusterRoleBinding"}:            rankCluster,
	{Group: "scheduling.k8s.io", Kind: "PriorityClass"}:                         rankCluster,
	{Group: "networking.k8s.io", Kind: "IngressClass"}:                          rankCluster,
	{Group: "networking.k8s.io", Kind: "IPAddress"}:                             rankCluster,
	{Group: "networking.k8s.io", Kind: "ServiceCIDR"}:                           rankCluster,
	{Group: "node.k8s.io", Kind: "RuntimeClass"}:                                rankCluster,
	{Group: "apiregistration.k8s.io", Kind: "APIService"}:                       rankCluster,
	{Group: "flowcontrol.apiserver.k8s.io", Kind: "FlowSchema"}:                 rankCluster,
	{Group: "flowcontrol.apiserver.k8s.io", Kind: "PriorityLevelConfiguration"}: rankCluster,
	{Group: "certificates.k8s.io", Kind: "CertificateSigningRequest"}:           rankCluster,
	{Group: "certificates.k8s.io", Kind: "ClusterTrustBundle"}:                  rankCluster,
	{Group: "resource.k8s.io", Kind: "DeviceClass"}:                             rankCluster,

	{Group: "", Kind: "LimitRange"}:    rankNamespacePolicy,
	{Group: "", Kind: "ResourceQuota"}: rankNamespacePolicy,

	{Group: "", Kind: "ServiceAccount"}: rankServiceAccount,
	{Group: "", Kind: "Secret"}:         rankSecret,
	{Group: "", Kind: "ConfigMap"}:      rankConfigMap,

	{Group: "rbac.authorization.k8s.io", Kind: "Role"}:        rankRBAC,
	{Group: "rbac.authorization.k8s.io", Kind: "RoleBinding"}: rankRBAC,

	{Group: "", Kind: "Service"}:               rankService,
	{Group: "", Kind: "PersistentVolumeClaim"}: rankPVC,

	{Group: "apps", Kind: "Deployment"}:                        rankWorkload,
	{Group: "apps", Kind: "StatefulSet"}:                       rankWorkload,
	{Group: "apps", Kind: "DaemonSet"}:                         rankWorkload,
	{Group: "apps", Kind: "ReplicaSet"}:                        rankWorkload,
	{Group: "batch", Kind: "Job"}:                              rankWorkload,
	{Group: "batch", Kind: "CronJob"}:                          rankWorkload,
	{Group: "", Kind: "Pod"}:                                   rankWorkload,
	{Group: "", Kind: "ReplicationController"}:                 rankWorkload,
	{Group: "", Kind: "Endpoints"}:                             rankOther,
	{Group: "", Kind: "PodTemplate"}:                           rankOther,
	{Group: "", Kind: "Event"}:                                 rankOther,
	{Group: "apps", Kind: "ControllerRevision"}:                rankOther,
	{Group: "discovery.k8s.io", Kind: "EndpointSlice"}:         rankOther,
	{Group: "policy", Kind: "PodDisruptionBudget"}:             rankOther,
	{Group: "autoscaling", Kind: "HorizontalPodAutoscaler"}:    rankOther,
	{Group: "networking.k8s.io", Kind: "Ingress"}:              rankOther,
	{Group: "networking.k8s.io", Kind: "NetworkPolicy"}:        rankOther,
	{Group: "coordination.k8s.io", Kind: "Lease"}:              rankOther,
	{Group: "storage.k8s.io", Kind: "CSIStorageCapacity"}:      rankOther,
	{Group: "snapshot.storage.k8s.io", Kind: "VolumeSnapshot"}: rankOther,

	{Group: "admissionregistration.k8s.io", Kind: "MutatingWebhookConfiguration"}:     rankWebhook,
	{Group: "admissionregistration.k8s.io", Kind: "ValidatingWebhookConfiguration"}:   rankWebhook,
	{Group: "admissionregistration.k8s.io", Kind: "ValidatingAdmissionPolicy"}:        rankWebhook,
	{Group: "admissionregistration.k8s.io", Kind: "ValidatingAdmissionPolicyBinding"}: rankWebhook,
	{Group: "admissionregistration.k8s.io", Kind: "MutatingAdmissionPolicy"}:          rankWebhook,
	{Group: "admissionregistration.k8s.io", Kind: "MutatingAdmissionPolicyBinding"}:   rankWebhook,
}

// Rank returns the apply rank of obj: objects of a lower rank are applied
// first. Well-known kinds have a fixed rank (see the rank constants). Any
// other kind is taken as cluster-scoped when obj has no metadata.namespace
// (kustomize leaves a namespace on every namespaced object of a build that
// sets one), and ranked after the workloads otherwise.
func Rank(obj *unstructured.Unstructured) int {
	return rankOf(obj.GroupVersionKind().GroupKind(), obj.GetNamespace())
}

// rankOf is Rank of an object of kind gk in namespace.
func rankOf(gk schema.GroupKind, namespace string) int {
	if r, ok := kindRanks[gk]; ok {
		return r
	}
	if namespace == "" {
		return rankCluster
	}
	return rankOther
}

// Sort returns objs in apply order, by Rank. The sort is stable: objects of
// equal rank keep their order in objs, which for a build is the order of the
// kustomization's resources. objs itself is not modified.
func Sort(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	sorted := slices.Clone(objs)
	slices.SortStableFunc(sorted, func(a, b *unstructured.Unstructured) int {
		return cmp.Compare(Rank(a), Rank(b))
	})
	return sorted
}
