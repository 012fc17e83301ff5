package ebscsi

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Topology keys of the driver's NodeGetInfo answer. kubelet copies them into
// CSINode.spec.drivers[].topologyKeys and labels the Node with them.
const (
	// driverZoneKey is the driver's own zone key, deprecated upstream in
	// favour of the well-known one but still reported by every node.
	driverZoneKey = "topology.ebs.csi.aws.com/zone"
	zoneKey       = corev1.LabelTopologyZone // topology.kubernetes.io/zone
	osKey         = corev1.LabelOSStable     // kubernetes.io/os
)

// nodeIDAnnotation is the Node annotation in which kubelet records the node
// ID of every registered CSI driver, as a JSON object keyed by driver name.
const nodeIDAnnotation = "csi.volume.kubernetes.io/nodeid"

// attachLimit is the CSINode allocatable count the driver reports for an
// m5.large: 28 Nitro attachment slots less the root volume and the ENIs.
const attachLimit = 25

// instanceID is the fake EC2 instance ID of the node called name: "i-" and
// 17 hex digits, the same on every run so that a test can predict it.
func instanceID(nodeName string) string {
	sum := sha256.Sum256([]byte(nodeName))
	return "i-" + hex.EncodeToString(sum[:])[:17]
}

// nodeZone is the availability zone of node, which the real driver reads
// from the instance metadata: here, from the node's zone labels.
func nodeZone(node *corev1.Node) string {
	if zone := node.Labels[zoneKey]; zone != "" {
		return zone
	}
	return node.Labels[driverZoneKey]
}

// nodeTopology is the accessible topology the driver reports for node.
// Without a known zone it reports only the operating system.
func nodeTopology(node *corev1.Node) map[string]string {
	segments := map[string]string{osKey: "linux"}
	if zone := nodeZone(node); zone != "" {
		segments[driverZoneKey] = zone
		segments[zoneKey] = zone
	}
	return segments
}

// csiNodeDriver is the entry kubelet writes for the driver on node.
func csiNodeDriver(node *corev1.Node, driverName string) storagev1.CSINodeDriver {
	return storagev1.CSINodeDriver{
		Name:         driverName,
		NodeID:       instanceID(node.Name),
		TopologyKeys: slices.Sorted(maps.Keys(nodeTopology(node))),
		Allocatable:  &storagev1.VolumeNodeResources{Count: new(int32(attachLimit))},
	}
}

// desiredCSINode is live (nil if there is none) as kubelet leaves it once the
// driver has registered on node: owned by the Node, with the driver's entry
// in place and other drivers' entries kept. changed is false when live is
// already so.
func desiredCSINode(live *storagev1.CSINode, node *corev1.Node, driverName string) (want *storagev1.CSINode, changed bool) {
	if live == nil {
		want = &storagev1.CSINode{ObjectMeta: metav1.ObjectMeta{Name: node.Name}}
	} else {
		want = live.DeepCopy()
	}
	owner := metav1.OwnerReference{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}
	want.OwnerReferences = slices.DeleteFunc(want.OwnerReferences, func(r metav1.OwnerReference) bool {
		return r.APIVersion == owner.APIVersion && r.Kind == owner.Kind
	})
	want.OwnerReferences = append(want.OwnerReferences, owner)

	entry := csiNodeDriver(node, driverName)
	i := slices.IndexFunc(want.Spec.Drivers, func(d storagev1.CSINodeDriver) bool { return d.Name == driverName })
	if i < 0 {
		want.Spec.Drivers = append(want.Spec.Drivers, entry)
	} else {
		want.Spec.Drivers[i] = entry
	}
	return want, live == nil || !equality.Semantic.DeepEqual(live, want)
}

// nodeRegistrationPatch is the JSON merge patch with which kubelet records
// the driver's registration on node: the topology labels it lacks and the
// driver's entry in the node-ID annotation. It is nil when there is nothing
// to add. Like kubelet, it never overwrites a label that has another value.
func nodeRegistrationPatch(node *corev1.Node, driverName string) ([]byte, error) {
	labels := map[string]string{}
	for key, value := range nodeTopology(node) {
		if _, ok := node.Labels[key]; !ok {
			labels[key] = value
		}
	}
	ids := map[string]string{}
	// An unreadable annotation is replaced, as kubelet would.
	_ = json.Unmarshal([]byte(node.Annotations[nodeIDAnnotation]), &ids)
	id := instanceID(node.Name)
	annotations := map[string]string{}
	if ids[driverName] != id {
		ids[driverName] = id
		b, err := json.Marshal(ids)
		if err != nil {
			return nil, err
		}
		annotations[nodeIDAnnotation] = string(b)
	}
	if len(labels) == 0 && len(annotations) == 0 {
		return nil, nil
	}
	meta := map[string]map[string]string{}
	if len(labels) > 0 {
		meta["labels"] = labels
	}
	if len(annotations) > 0 {
		meta["annotations"] = annotations
	}
	return json.Marshal(map[string]any{"metadata": meta})
}
