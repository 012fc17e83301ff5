package drift

import (
	"log/slog"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
)

// templateClaim is a PVC made from a StatefulSet's volumeClaimTemplate.
type templateClaim struct {
	pvc      *corev1.PersistentVolumeClaim
	sts      *appsv1.StatefulSet
	ref      Ref // the StatefulSet
	template *corev1.PersistentVolumeClaim
	ordinal  int
}

// templateClaims returns the PVCs named <template>-<statefulset>-<ordinal>
// of the managed StatefulSets.
func templateClaims(s Snapshot) []templateClaim {
	var out []templateClaim
	for _, w := range workloads(s) {
		if w.sts == nil {
			continue
		}
		for i := range w.sts.Spec.VolumeClaimTemplates {
			tmpl := &w.sts.Spec.VolumeClaimTemplates[i]
			prefix := tmpl.Name + "-" + w.sts.Name + "-"
			for _, pvc := range s.PVCs {
				rest, ok := strings.CutPrefix(pvc.Name, prefix)
				if !ok || pvc.Namespace != w.sts.Namespace {
					continue
				}
				ordinal, err := strconv.Atoi(rest)
				if err != nil || ordinal < 0 || strconv.Itoa(ordinal) != rest {
					continue
				}
				out = append(out, templateClaim{pvc: pvc, sts: w.sts, ref: w.ref, template: tmpl, ordinal: ordinal})
			}
		}
	}
	return out
}

// CheckPVCOrphaned: a template claim whose ordinal the StatefulSet no
// longer runs, left behind by a scale-down.
func CheckPVCOrphaned(s Snapshot, _ Options) []Finding {
	pods := map[Ref]bool{}
	for _, pod := range s.Pods {
		pods[podRef(pod)] = true
	}
	var out []Finding
	for _, c := range templateClaims(s) {
		start, end := ordinals(c.sts)
		if c.ordinal >= start && c.ordinal < end {
			continue
		}
		if p := c.sts.Spec.PersistentVolumeClaimRetentionPolicy; p != nil && p.WhenScaled == appsv1.DeletePersistentVolumeClaimRetentionPolicyType {
			continue // the controller deletes it
		}
		pod := Ref{Kind: "Pod", Namespace: c.sts.Namespace, Name: c.sts.Name + "-" + strconv.Itoa(c.ordinal)}
		if pods[pod] {
			continue // still scaling down
		}
		replicas := end - start
		volume := "it is bound to no volume"
		if c.pvc.Spec.VolumeName != "" {
			volume = "its volume " + c.pvc.Spec.VolumeName + " still exists"
		}
		out = append(out, Finding{Code: PVCOrphaned, Object: claimRef(c.pvc),
			Detail: detailf("PVC %s was left behind by a scale-down of StatefulSet %s to %d replicas; %s",
				c.pvc.Name, c.sts.Name, replicas, volume),
			Attrs: []slog.Attr{slog.Int("ordinal", c.ordinal), slog.Int("replicas", replicas),
				slog.String("statefulSet", c.ref.String()), slog.String("volume", c.pvc.Spec.VolumeName)}})
	}
	return out
}

// CheckPVCSize: a template claim whose request differs from its template.
func CheckPVCSize(s Snapshot, _ Options) []Finding {
	var out []Finding
	for _, c := range templateClaims(s) {
		start, end := ordinals(c.sts)
		if c.ordinal < start || c.ordinal >= end {
			continue
		}
		want, wok := c.template.Spec.Resources.Requests[corev1.ResourceStorage]
		got, gok := c.pvc.Spec.Resources.Requests[corev1.ResourceStorage]
		if !wok || !gok || want.Cmp(got) == 0 {
			continue
		}
		out = append(out, Finding{Code: PVCSize, Object: claimRef(c.pvc),
			Detail: detailf("PVC %s requests %s, the volumeClaimTemplate %s of StatefulSet %s says %s", c.pvc.Name, got.String(), c.template.Name, c.sts.Name, want.String()),
			Attrs: []slog.Attr{slog.String("want", want.String()), slog.String("got", got.String()),
				slog.String("statefulSet", c.ref.String())}})
	}
	return out
}

// CheckPVCPending: a managed claim not Bound past its grace period, except
// a WaitForFirstConsumer claim no pod uses yet.
func CheckPVCPending(s Snapshot, o Options) []Finding {
	o = o.withDefaults()
	var out []Finding
	for _, pvc := range managedClaims(s) {
		if pvc.Status.Phase != corev1.ClaimPending || pvc.DeletionTimestamp != nil {
			continue
		}
		class := storageClassOf(s, pvc.Spec.StorageClassName)
		if class != nil && class.VolumeBindingMode != nil && *class.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer && !hasConsumer(s, pvc) {
			continue
		}
		out = append(out, Finding{Code: PVCPending, Object: claimRef(pvc), Grace: o.PVCPendingGrace, Since: onset(pvc.CreationTimestamp),
			Detail: detailf("PVC %s is Pending: no volume bound (StorageClass %s)", pvc.Name, orNone(ptrString(pvc.Spec.StorageClassName))),
			Attrs:  []slog.Attr{slog.String("storageClass", ptrString(pvc.Spec.StorageClassName))}})
	}
	return out
}

// selectedNode is the annotation the scheduler sets on a
// WaitForFirstConsumer claim once it placed a pod that uses it: from then
// on the claim is expected to bind.
const selectedNode = "volume.kubernetes.io/selected-node"

// hasConsumer reports whether the claim has a consumer that should make it
// bind: a scheduled pod that uses it, or the scheduler's node choice. A pod
// that cannot be scheduled is pod-missing's to report, not the claim's.
func hasConsumer(s Snapshot, pvc *corev1.PersistentVolumeClaim) bool {
	if pvc.Annotations[selectedNode] != "" {
		return true
	}
	for _, pod := range s.Pods {
		if pod.Namespace != pvc.Namespace || pod.Spec.NodeName == "" {
			continue
		}
		for _, v := range pod.Spec.Volumes {
			if v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == pvc.Name {
				return true
			}
		}
	}
	return false
}

// managedClaims returns the claims of the managed namespaces.
func managedClaims(s Snapshot) []*corev1.PersistentVolumeClaim {
	managed := ManagedNamespaces(s.Desired)
	var out []*corev1.PersistentVolumeClaim
	for _, pvc := range s.PVCs {
		if slices.Contains(managed, pvc.Namespace) {
			out = append(out, pvc)
		}
	}
	return out
}

// CheckPVCLost: a managed claim whose volume is gone.
func CheckPVCLost(s Snapshot, _ Options) []Finding {
	var out []Finding
	for _, pvc := range managedClaims(s) {
		if pvc.Status.Phase == corev1.ClaimLost {
			out = append(out, Finding{Code: PVCLost, Object: claimRef(pvc),
				Detail: detailf("PVC %s is Lost: its volume %s no longer exists", pvc.Name, orNone(pvc.Spec.VolumeName)),
				Attrs:  []slog.Attr{slog.String("volume", pvc.Spec.VolumeName)}})
		}
	}
	return out
}

// CheckPVReclaimPolicy: a Bound volume of a managed namespace whose
// reclaim policy is not its StorageClass's (or Options.ReclaimPolicy).
func CheckPVReclaimPolicy(s Snapshot, o Options) []Finding {
	var out []Finding
	for _, pv := range managedVolumes(s) {
		if pv.Status.Phase != corev1.VolumeBound {
			continue
		}
		want, source, ok := wantReclaimPolicy(s, o, pv)
		got := string(pv.Spec.PersistentVolumeReclaimPolicy)
		if !ok || got == want {
			continue
		}
		claim := claimOf(pv)
		out = append(out, Finding{Code: PVReclaimPolicy, Object: pvRef(pv),
			Detail: detailf("PersistentVolume %s of claim %s has reclaim policy %s, %s %s", pv.Name, claim, got, source, want),
			Attrs: []slog.Attr{slog.String("want", want), slog.String("got", got), slog.String("reclaimPolicy", got),
				slog.String("claim", claim), slog.String("storageClass", pv.Spec.StorageClassName)}})
	}
	return out
}

// wantReclaimPolicy returns the policy a volume should have and who says
// so; ok is false when nobody does (no option, class unknown).
func wantReclaimPolicy(s Snapshot, o Options, pv *corev1.PersistentVolume) (want, source string, ok bool) {
	if o.ReclaimPolicy != "" {
		return o.ReclaimPolicy, "gitopsd is configured to expect", true
	}
	if pv.Spec.StorageClassName == "" {
		return "", "", false
	}
	class := storageClassOf(s, &pv.Spec.StorageClassName)
	if class == nil {
		return "", "", false
	}
	want = string(corev1.PersistentVolumeReclaimDelete) // the API's default
	if class.ReclaimPolicy != nil {
		want = string(*class.ReclaimPolicy)
	}
	return want, "its StorageClass " + class.Name + " says", true
}

// CheckPVReleased: a volume whose claim in a managed namespace is gone but
// which still exists (Retain): it keeps costing money until deleted.
func CheckPVReleased(s Snapshot, _ Options) []Finding {
	var out []Finding
	for _, pv := range managedVolumes(s) {
		if pv.Status.Phase != corev1.VolumeReleased && pv.Status.Phase != corev1.VolumeAvailable {
			continue
		}
		claim, capacity := claimOf(pv), pv.Spec.Capacity[corev1.ResourceStorage]
		out = append(out, Finding{Code: PVReleased, Object: pvRef(pv),
			Detail: detailf("PersistentVolume %s (%s) is %s: its claim %s is gone, the volume still exists and costs money until it is deleted",
				pv.Name, capacity.String(), pv.Status.Phase, claim),
			Attrs: []slog.Attr{slog.String("reclaimPolicy", string(pv.Spec.PersistentVolumeReclaimPolicy)),
				slog.String("claim", claim), slog.String("capacity", capacity.String())}})
	}
	return out
}

// managedVolumes returns the volumes whose claimRef points into a managed
// namespace, bound or not.
func managedVolumes(s Snapshot) []*corev1.PersistentVolume {
	managed := ManagedNamespaces(s.Desired)
	var out []*corev1.PersistentVolume
	for _, pv := range s.PVs {
		if pv.Spec.ClaimRef != nil && slices.Contains(managed, pv.Spec.ClaimRef.Namespace) {
			out = append(out, pv)
		}
	}
	return out
}

func claimOf(pv *corev1.PersistentVolume) string {
	return pv.Spec.ClaimRef.Namespace + "/" + pv.Spec.ClaimRef.Name
}

// storageClassOf finds a class by name; nil name means the default class.
func storageClassOf(s Snapshot, name *string) *storagev1.StorageClass {
	for _, sc := range s.StorageClasses {
		if name != nil && sc.Name == *name {
			return sc
		}
		if name == nil && sc.Annotations["storageclass.kubernetes.io/is-default-class"] == "true" {
			return sc
		}
	}
	return nil
}

func ptrString(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
