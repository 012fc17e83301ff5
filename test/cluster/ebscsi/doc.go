// Package ebscsi simulates the Amazon EBS CSI driver (ebs.csi.aws.com) in
// process, for the local test control plane, which has no cloud, no CSI
// driver and no kubelet: kwok fakes the nodes. Run starts it as a goroutine
// of a test binary or of the local cluster command and stops it with its
// context.
//
// What it simulates is what a user of a StatefulSet on EBS sees through the
// API server:
//
//   - Registration: the CSIDriver object of the driver's Helm chart, and
//     what kubelet writes when the node plugin registers on each Node,
//     present and future: a CSINode owned by the Node with the driver's node
//     ID (a fake EC2 instance ID "i-" and 17 hex digits, derived from the
//     node name), its topology keys and attach limit, plus the Node's
//     topology labels and node-ID annotation.
//   - Provisioning, by the external-provisioner's own library
//     (sig-storage-lib-external-provisioner), set up as the driver's chart
//     sets up the external-provisioner (no leader election here): for
//     claims of StorageClasses whose provisioner is the driver, after the
//     scheduler selected a node under WaitForFirstConsumer. The PV is the
//     one the external-provisioner builds from the driver's answer: volume
//     handle "vol-" and 17 hex digits, capacity rounded up to whole GiB,
//     nodeAffinity on the zone of the selected node, fsType from
//     csi.storage.k8s.io/fstype or ext4, reclaimPolicy and mountOptions from
//     the class. Parameters that the external-provisioner or the driver
//     reject (an unknown key or volume type, a size out of range for the
//     type, ...) fail provisioning with a ProvisioningFailed Event on the
//     claim, retried with backoff as the real one does.
//   - Deletion: a Released PV with reclaim policy Delete loses its
//     "volume" and is deleted; a Retain PV stays Released. The
//     external-provisioner's finalizer is on Delete PVs only, as upstream.
//   - Expansion, as the external-resizer and then kubelet's node expansion
//     would do it: a bound claim of a class with allowVolumeExpansion that
//     requests more than it has gets a PV of the new size (whole GiB) and a
//     status capacity to match, at once and without a mounting pod.
//
// It does not simulate attaching or mounting (no external-attacher, so no
// VolumeAttachment is ever marked attached; kwok runs pods without
// volumes), snapshots and restores, clones, volume modification
// (VolumeAttributesClass), encryption, IOPS or throughput (accepted and
// checked for form only), EC2 quotas or capacity, or AWS errors beyond the
// parameter and size checks.
package ebscsi
