package drift

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	pv0 = "pvc-a716fd11-f70f-4ff1-95fe-81dc3c654c6f" // data-mysql-0's volume
	pv1 = "pvc-0e2a524c-e23e-4d5f-a7c5-29c20355b4f8" // data-mysql-1's
	pv2 = "pvc-6c0e1a4e-0000-4000-8000-000000000002" // leftBehind's data-mysql-2
)

// newClaim adds a Pending claim created a minute ago, as a user would
// apply it (class nil means the default class).
func newClaim(s *Snapshot, namespace, name string, class *string) *corev1.PersistentVolumeClaim {
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, CreationTimestamp: metav1.NewTime(now.Add(-time.Minute))},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: class,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}},
		Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending},
	}
	s.PVCs = append(s.PVCs, pvc)
	return pvc
}

// unbind makes a claim Pending again, with no node chosen for it yet.
func unbind(pvc *corev1.PersistentVolumeClaim) {
	pvc.Spec.VolumeName = ""
	pvc.Status = corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending}
	delete(pvc.Annotations, selectedNode)
}

// released makes what deleting a left-behind claim with a Retain volume
// leaves: the volume, in phase.
func released(t *testing.T, s *Snapshot, phase corev1.PersistentVolumePhase) *corev1.PersistentVolume {
	_, pv := leftBehind(t, s, 2)
	s.PVCs = s.PVCs[:len(s.PVCs)-1]
	pv.Spec.PersistentVolumeReclaimPolicy, pv.Status.Phase = corev1.PersistentVolumeReclaimRetain, phase
	return pv
}

func TestStorageChecks(t *testing.T) {
	gp2 := "mysql-gp2"
	tests := map[string]struct {
		edit  func(t *testing.T, s *Snapshot)
		check func(Snapshot, Options) []Finding
		opts  Options
		want  []string
	}{
		"left behind by a scale-down": {
			edit:  func(t *testing.T, s *Snapshot) { leftBehind(t, s, 2) },
			check: CheckPVCOrphaned,
			want:  []string{"pvc-orphaned PersistentVolumeClaim/mysql/data-mysql-2 ordinal=2 replicas=2 statefulSet=StatefulSet/mysql/mysql volume=" + pv2},
		},
		"scale-down still running": {
			edit: func(t *testing.T, s *Snapshot) {
				leftBehind(t, s, 2)
				pod := findPod(t, *s, "mysql-1").DeepCopy()
				pod.Name = "mysql-2"
				s.Pods = append(s.Pods, pod)
			},
			check: CheckPVCOrphaned,
		},
		"whenScaled Delete: the controller deletes it": {
			edit: func(t *testing.T, s *Snapshot) {
				leftBehind(t, s, 2)
				setField(t, s.Live[statefulSetRef].Object, "Delete", "spec", "persistentVolumeClaimRetentionPolicy", "whenScaled")
			},
			check: CheckPVCOrphaned,
		},
		"ordinals start at 1: ordinal 0 is outside": {
			edit: func(t *testing.T, s *Snapshot) {
				setField(t, s.Live[statefulSetRef].Object, map[string]any{"start": int64(1)}, "spec", "ordinals")
				withoutPod(s, "mysql-0")
			},
			check: CheckPVCOrphaned,
			want:  []string{"pvc-orphaned PersistentVolumeClaim/mysql/data-mysql-0 ordinal=0 replicas=2 statefulSet=StatefulSet/mysql/mysql volume=" + pv0},
		},
		"claims not made from the template": {
			edit: func(t *testing.T, s *Snapshot) {
				for _, name := range []string{"data-mysql-x", "data-mysql-02", "data-mysql--3", "backup-mysql-5"} {
					newClaim(s, ns, name, &gp2)
				}
			},
			check: CheckPVCOrphaned,
		},
		"WaitForFirstConsumer, no consumer yet": {
			edit:  func(t *testing.T, s *Snapshot) { newClaim(s, ns, "scratch", &gp2) },
			check: CheckPVCPending,
		},
		"WaitForFirstConsumer, default class, no consumer yet": {
			edit: func(t *testing.T, s *Snapshot) {
				s.StorageClasses[0].Annotations = map[string]string{"storageclass.kubernetes.io/is-default-class": "true"}
				newClaim(s, ns, "scratch", nil)
			},
			check: CheckPVCPending,
		},
		"WaitForFirstConsumer, consumer scheduled": {
			edit:  func(t *testing.T, s *Snapshot) { unbind(findClaim(t, *s, "data-mysql-1")) },
			check: CheckPVCPending,
			want:  []string{"pvc-pending PersistentVolumeClaim/mysql/data-mysql-1 storageClass=mysql-gp2 grace=2m0s age=4m29s"},
		},
		"WaitForFirstConsumer, the scheduler chose a node": {
			edit: func(t *testing.T, s *Snapshot) {
				newClaim(s, ns, "scratch", &gp2).Annotations = map[string]string{selectedNode: node0}
			},
			check: CheckPVCPending,
			opts:  Options{PVCPendingGrace: 5 * time.Minute},
			want:  []string{"pvc-pending PersistentVolumeClaim/mysql/scratch storageClass=mysql-gp2 grace=5m0s age=59s"},
		},
		"WaitForFirstConsumer, consumer unschedulable: pod-missing's to report": {
			edit: func(t *testing.T, s *Snapshot) {
				unbind(findClaim(t, *s, "data-mysql-1"))
				unschedulable(time.Minute)(findPod(t, *s, "mysql-1"))
			},
			check: CheckPVCPending,
		},
		"Immediate binding, not bound": {
			edit: func(t *testing.T, s *Snapshot) {
				immediate := storagev1.VolumeBindingImmediate
				s.StorageClasses = append(s.StorageClasses, &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "gp3"},
					Provisioner: "ebs.csi.aws.com", VolumeBindingMode: &immediate})
				class := "gp3"
				newClaim(s, ns, "scratch", &class)
				newClaim(s, "other", "scratch", &class) // not a managed namespace
			},
			check: CheckPVCPending,
			want:  []string{"pvc-pending PersistentVolumeClaim/mysql/scratch storageClass=gp3 grace=2m0s age=59s"},
		},
		"lost": {
			edit:  func(t *testing.T, s *Snapshot) { findClaim(t, *s, "data-mysql-0").Status.Phase = corev1.ClaimLost },
			check: CheckPVCLost,
			want:  []string{"pvc-lost PersistentVolumeClaim/mysql/data-mysql-0 volume=" + pv0},
		},
		"claim expanded by hand": {
			edit: func(t *testing.T, s *Snapshot) {
				findClaim(t, *s, "data-mysql-0").Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("20Gi")
			},
			check: CheckPVCSize,
			want:  []string{"pvc-size PersistentVolumeClaim/mysql/data-mysql-0 want=10Gi got=20Gi statefulSet=StatefulSet/mysql/mysql"},
		},
		"same size in other units": {
			edit: func(t *testing.T, s *Snapshot) {
				findClaim(t, *s, "data-mysql-0").Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("10240Mi")
			},
			check: CheckPVCSize,
		},
		"reclaim policy patched to Retain": {
			edit: func(t *testing.T, s *Snapshot) {
				volumeOf(t, *s, "data-mysql-1").Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimRetain
			},
			check: CheckPVReclaimPolicy,
			want:  []string{"pv-reclaim-policy PersistentVolume/" + pv1 + " want=Delete got=Retain reclaimPolicy=Retain claim=mysql/data-mysql-1 storageClass=mysql-gp2"},
		},
		"reclaim policy expected by option": {
			edit:  func(t *testing.T, s *Snapshot) {},
			check: CheckPVReclaimPolicy,
			opts:  Options{ReclaimPolicy: "Retain"},
			want: []string{
				"pv-reclaim-policy PersistentVolume/" + pv1 + " want=Retain got=Delete reclaimPolicy=Delete claim=mysql/data-mysql-1 storageClass=mysql-gp2",
				"pv-reclaim-policy PersistentVolume/" + pv0 + " want=Retain got=Delete reclaimPolicy=Delete claim=mysql/data-mysql-0 storageClass=mysql-gp2",
			},
		},
		"reclaim policy of an unknown class": {
			edit: func(t *testing.T, s *Snapshot) {
				pv := volumeOf(t, *s, "data-mysql-1")
				pv.Spec.StorageClassName, pv.Spec.PersistentVolumeReclaimPolicy = "gp2-legacy", corev1.PersistentVolumeReclaimRetain
			},
			check: CheckPVReclaimPolicy,
		},
		"released, retained": {
			edit:  func(t *testing.T, s *Snapshot) { released(t, s, corev1.VolumeReleased) },
			check: CheckPVReleased,
			want:  []string{"pv-released PersistentVolume/" + pv2 + " reclaimPolicy=Retain claim=mysql/data-mysql-2 capacity=10Gi"},
		},
		"Available with a claimRef": {
			edit:  func(t *testing.T, s *Snapshot) { released(t, s, corev1.VolumeAvailable) },
			check: CheckPVReleased,
			want:  []string{"pv-released PersistentVolume/" + pv2 + " reclaimPolicy=Retain claim=mysql/data-mysql-2 capacity=10Gi"},
		},
		"released from another namespace": {
			edit: func(t *testing.T, s *Snapshot) {
				released(t, s, corev1.VolumeReleased).Spec.ClaimRef.Namespace = "other"
			},
			check: CheckPVReleased,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := mysql(t)
			tc.edit(t, &s)
			if diff := cmp.Diff(tc.want, renderAll(tc.check(s, tc.opts))); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStorageDetails(t *testing.T) {
	orphaned, retained := mysql(t), mysql(t)
	leftBehind(t, &orphaned, 2)
	released(t, &retained, corev1.VolumeReleased)
	tests := map[string]struct {
		s     Snapshot
		check func(Snapshot, Options) []Finding
		want  string
	}{
		"pvc-orphaned": {orphaned, CheckPVCOrphaned,
			"PVC data-mysql-2 was left behind by a scale-down of StatefulSet mysql to 2 replicas; its volume " + pv2 + " still exists"},
		"pv-released": {retained, CheckPVReleased,
			"PersistentVolume " + pv2 + " (10Gi) is Released: its claim mysql/data-mysql-2 is gone, the volume still exists and costs money until it is deleted"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := tc.check(tc.s, Options{})
			if len(got) != 1 || got[0].Detail != tc.want {
				t.Errorf("got %+v, want one finding with detail %q", got, tc.want)
			}
		})
	}
}
