package ebscsi

import (
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v13/controller"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v13/util"
)

const (
	// provisionerIDKey is the volume attribute in which the
	// external-provisioner records which of its instances made a volume.
	provisionerIDKey = "storage.kubernetes.io/csiProvisionerIdentity"

	// The external-provisioner annotates every PV with the secret its
	// DeleteVolume needs, empty when the class names none.
	annDeletionSecretName      = "volume.kubernetes.io/provisioner-deletion-secret-name"
	annDeletionSecretNamespace = "volume.kubernetes.io/provisioner-deletion-secret-namespace"

	gib = 1 << 30
)

// provisionRequest is everything one Provision call decides on, gathered
// from the API server beforehand.
type provisionRequest struct {
	driverName string
	// identity is the provisioner identity recorded in every PV it makes.
	identity string
	class    *storagev1.StorageClass
	claim    *corev1.PersistentVolumeClaim
	pvName   string
	volumeID string
	// selectedNode is the node the scheduler picked for the claim's first
	// pod (WaitForFirstConsumer); nil under Immediate binding.
	selectedNode *corev1.Node
	// nodes are the cluster's nodes, among whose zones an Immediate-binding
	// volume is placed when the class allows any zone.
	nodes []*corev1.Node
}

// newPV is the PV that the external-provisioner makes from the driver's
// CreateVolume answer for req, or the error either of them returns. The
// provisioning library adds the claim reference, the provisioned-by
// annotation, its finalizer and storageClassName before it saves the PV.
func newPV(req provisionRequest) (*corev1.PersistentVolume, error) {
	params, err := parseClass(req.class)
	if err != nil {
		return nil, err
	}
	ref := "PersistentVolumeClaim/" + req.claim.Namespace + "/" + req.claim.Name
	if err := checkClaim(req.claim, params); err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	zone, err := volumeZone(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	return buildPV(req, params, zone), nil
}

// buildPV assembles the PV for a volume created in zone.
func buildPV(req provisionRequest, params classParams, zone string) *corev1.PersistentVolume {
	attributes := map[string]string{provisionerIDKey: req.identity}
	maps.Copy(attributes, params.context)
	source := &corev1.CSIPersistentVolumeSource{
		Driver:           req.driverName,
		VolumeHandle:     req.volumeID,
		VolumeAttributes: attributes,
	}
	if !util.CheckPersistentVolumeClaimModeBlock(req.claim) {
		source.FSType = params.fsType
	}
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        req.pvName,
			Annotations: map[string]string{annDeletionSecretName: "", annDeletionSecretNamespace: ""},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:               corev1.ResourceList{corev1.ResourceStorage: roundUpGiB(requested(req.claim))},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: source},
			AccessModes:            slices.Clone(req.claim.Spec.AccessModes),
			MountOptions:           slices.Clone(req.class.MountOptions),
			VolumeMode:             req.claim.Spec.VolumeMode,
			NodeAffinity:           zoneAffinity(zone),
		},
	}
	if req.class.ReclaimPolicy != nil {
		pv.Spec.PersistentVolumeReclaimPolicy = *req.class.ReclaimPolicy
	}
	return pv
}

// zoneAffinity pins a volume to its availability zone, as the topology
// segment the driver's CreateVolume returns does.
func zoneAffinity(zone string) *corev1.VolumeNodeAffinity {
	return &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{{
			MatchExpressions: []corev1.NodeSelectorRequirement{{
				Key:      zoneKey,
				Operator: corev1.NodeSelectorOpIn,
				Values:   []string{zone},
			}},
		}},
	}}
}

// checkClaim fails where the external-provisioner or the driver refuse
// claim for a class with params. A data source that neither handles is an
// IgnoredError, which leaves the claim to a volume populator.
func checkClaim(claim *corev1.PersistentVolumeClaim, params classParams) error {
	if err := checkDataSource(claim); err != nil {
		return err
	}
	if claim.Spec.Selector != nil {
		return errors.New("claim Selector is not supported")
	}
	block := util.CheckPersistentVolumeClaimModeBlock(claim)
	if err := checkAccessModes(claim.Spec.AccessModes, block, params.volumeType); err != nil {
		return err
	}
	if block && len(params.context) > 0 {
		return fmt.Errorf("cannot use %s with block volume", slices.Min(slices.Collect(maps.Keys(params.context))))
	}
	return checkSize(sizeGiB(requested(claim)), params.volumeType)
}

func checkDataSource(claim *corev1.PersistentVolumeClaim) error {
	var kind, group string
	if ref := claim.Spec.DataSourceRef; ref != nil {
		kind, group = ref.Kind, ptrValue(ref.APIGroup)
	} else if ref := claim.Spec.DataSource; ref != nil {
		kind, group = ref.Kind, ptrValue(ref.APIGroup)
	}
	switch {
	case kind == "":
		return nil
	case kind == "VolumeSnapshot" && group == "snapshot.storage.k8s.io":
		return errors.New("restoring a VolumeSnapshot is not simulated")
	case kind == "PersistentVolumeClaim" && group == "":
		return errors.New("CSI driver does not support clone operations: controller CLONE_VOLUME capability is not reported")
	}
	return &controller.IgnoredError{Reason: fmt.Sprintf(
		"data source (%s) is not handled by the provisioner, assuming an external populator will provision it", kind)}
}

// checkAccessModes allows what EBS does: one node at a time, or several
// nodes on a raw io2 volume with multi-attach.
func checkAccessModes(modes []corev1.PersistentVolumeAccessMode, block bool, volumeType string) error {
	for _, mode := range modes {
		switch mode {
		case corev1.ReadWriteOnce, corev1.ReadWriteOncePod:
		case corev1.ReadWriteMany:
			if !block {
				return errors.New("volume capabilities not supported: ReadWriteMany needs volumeMode Block")
			}
			if volumeType != "io2" {
				return errors.New("multi-attach is only supported for io2 volumes")
			}
		default:
			return fmt.Errorf("volume capabilities not supported: %s", mode)
		}
	}
	return nil
}

// checkSize fails where EC2's CreateVolume does.
func checkSize(size int64, volumeType string) error {
	limits := volumeTypes[volumeType]
	if size < limits.min {
		return fmt.Errorf("volume of %dGiB is too small for %s; minimum is %dGiB", size, volumeType, limits.min)
	}
	if size > limits.max {
		return fmt.Errorf("volume of %dGiB is too large for %s; maximum is %dGiB", size, volumeType, limits.max)
	}
	return nil
}

// volumeZone is where the volume goes: the selected node's zone, or under
// Immediate binding one of the zones the class allows or the nodes span.
func volumeZone(req provisionRequest) (string, error) {
	if node := req.selectedNode; node != nil {
		if zone := nodeZone(node); zone != "" {
			return zone, nil
		}
		return "", fmt.Errorf("selected Node/%s has no %s label", node.Name, zoneKey)
	}
	return pickZone(candidateZones(req.class, req.nodes), req.claim.Name)
}

// candidateZones are the zones an Immediate-binding volume of class may go
// to: those its allowedTopologies name, else those of the nodes. Sorted.
func candidateZones(class *storagev1.StorageClass, nodes []*corev1.Node) []string {
	var zones []string
	for _, term := range class.AllowedTopologies {
		for _, e := range term.MatchLabelExpressions {
			if e.Key == zoneKey || e.Key == driverZoneKey {
				zones = append(zones, e.Values...)
			}
		}
	}
	if len(zones) == 0 {
		for _, node := range nodes {
			if zone := nodeZone(node); zone != "" {
				zones = append(zones, zone)
			}
		}
	}
	slices.Sort(zones)
	return slices.Compact(zones)
}

// pickZone chooses among sorted zones as the external-provisioner orders its
// preferred topologies: by a hash of the claim's name, so that the claims of
// one StatefulSet ("data-mysql-0", "data-mysql-1", ...) go round the zones.
func pickZone(zones []string, claimName string) (string, error) {
	if len(zones) == 0 {
		return "", errors.New("no availability zone: no node has a zone label and the StorageClass allows none")
	}
	hash, offset := claimNameHash(claimName)
	return zones[(hash+offset)%uint32(len(zones))], nil
}

// claimNameHash splits a trailing ordinal off name and hashes the rest.
func claimNameHash(name string) (hash, offset uint32) {
	base := name
	if i := strings.LastIndex(name, "-"); i >= 0 {
		if n, err := strconv.ParseUint(name[i+1:], 10, 32); err == nil {
			base, offset = name[:i], uint32(n)
		}
	}
	h := fnv.New32a()
	h.Write([]byte(base))
	return h.Sum32(), offset
}

// requested is the storage a claim asks for.
func requested(claim *corev1.PersistentVolumeClaim) resource.Quantity {
	return claim.Spec.Resources.Requests[corev1.ResourceStorage]
}

// sizeGiB is q in whole GiB, rounded up: EBS allocates volumes in GiB.
func sizeGiB(q resource.Quantity) int64 {
	return (q.Value() + gib - 1) / gib
}

// roundUpGiB is q rounded up to whole GiB, written as "<n>Gi".
func roundUpGiB(q resource.Quantity) resource.Quantity {
	return *resource.NewQuantity(sizeGiB(q)*gib, resource.BinarySI)
}

// newVolumeID is a fresh EBS volume ID: "vol-" and 17 random hex digits.
func newVolumeID(random io.Reader) (string, error) {
	b := make([]byte, 9)
	if _, err := io.ReadFull(random, b); err != nil {
		return "", fmt.Errorf("volume ID: %w", err)
	}
	return "vol-" + hex.EncodeToString(b)[:17], nil
}

func ptrValue[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
