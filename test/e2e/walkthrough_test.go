package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/gitopsd/gitopsd/test/cluster"
	"github.com/gitopsd/gitopsd/test/manifests"
)

const ns = "mysql"

// TestWalkthrough replays ../shared/seed-walkthrough.md on the local cluster
// with plain server-side apply of overlays/dev: every step a person did by
// hand with kubectl, with the outcome the walkthrough describes.
func TestWalkthrough(t *testing.T) {
	releaseNamespace(t, ns)
	root, err := manifests.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	objs, err := manifests.Build(root, filepath.Join("overlays", "dev"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := applyAll(ctx, t, objs, "e2e-walkthrough", false); err != nil {
		t.Fatal(err)
	}

	t.Run("stack is up with bound EBS volumes", func(t *testing.T) {
		waitStatefulSetReady(t, ns, 2)
		for _, ord := range []int{0, 1} {
			checkVolume(t, ord)
		}
	})

	t.Run("not-ready switch shows 1/2 and leaves mysql-read", func(t *testing.T) {
		if err := cluster.SetFault(ctx, env.cs, ns, "mysql-1", cluster.NotReadyAnnotation, "mysql"); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "mysql-1 at 1/2 and out of mysql-read", func(ctx context.Context) error {
			if got := readyContainers(ctx, "mysql-1"); got != "1/2" {
				return fmt.Errorf("mysql-1 shows %s", got)
			}
			if slices.Contains(readyEndpoints(ctx, "mysql-read"), "mysql-1") {
				return fmt.Errorf("mysql-1 still a ready endpoint of mysql-read")
			}
			return nil
		})
		if err := cluster.ClearFault(ctx, env.cs, ns, "mysql-1", cluster.NotReadyAnnotation); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "mysql-1 back at 2/2 in mysql-read", func(ctx context.Context) error {
			if got := readyContainers(ctx, "mysql-1"); got != "2/2" {
				return fmt.Errorf("mysql-1 shows %s", got)
			}
			if !slices.Contains(readyEndpoints(ctx, "mysql-read"), "mysql-1") {
				return fmt.Errorf("mysql-1 not a ready endpoint of mysql-read: %v", readyEndpoints(ctx, "mysql-read"))
			}
			return nil
		})
	})

	t.Run("restart switch restarts a container", func(t *testing.T) {
		if err := cluster.SetFault(ctx, env.cs, ns, "mysql-0", cluster.RestartAnnotation, "xtrabackup"); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "xtrabackup of mysql-0 restarted once", func(ctx context.Context) error {
			pod, err := env.cs.CoreV1().Pods(ns).Get(ctx, "mysql-0", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if _, set := pod.Annotations[cluster.RestartAnnotation]; set {
				return fmt.Errorf("restart switch still set")
			}
			for _, s := range pod.Status.ContainerStatuses {
				if s.Name == "xtrabackup" && s.RestartCount == 1 && s.LastTerminationState.Terminated != nil {
					return nil
				}
			}
			return fmt.Errorf("container statuses: %+v", pod.Status.ContainerStatuses)
		})
	})

	t.Run("crash-loop switch holds a container in CrashLoopBackOff", func(t *testing.T) {
		if err := cluster.SetFault(ctx, env.cs, ns, "mysql-0", cluster.CrashLoopAnnotation, "mysql"); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "mysql of mysql-0 in CrashLoopBackOff", func(ctx context.Context) error {
			pod, err := env.cs.CoreV1().Pods(ns).Get(ctx, "mysql-0", metav1.GetOptions{})
			if err != nil {
				return err
			}
			for _, s := range pod.Status.ContainerStatuses {
				if s.Name == "mysql" && s.State.Waiting != nil && s.State.Waiting.Reason == "CrashLoopBackOff" && !s.Ready && s.RestartCount > 0 {
					return nil
				}
			}
			return fmt.Errorf("container statuses: %+v", pod.Status.ContainerStatuses)
		})
		if err := cluster.ClearFault(ctx, env.cs, ns, "mysql-0", cluster.CrashLoopAnnotation); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "mysql-0 back at 2/2", func(ctx context.Context) error {
			if got := readyContainers(ctx, "mysql-0"); got != "2/2" {
				return fmt.Errorf("mysql-0 shows %s", got)
			}
			return nil
		})
	})

	t.Run("a claim grows when its class allows expansion", func(t *testing.T) {
		patch := []byte(`{"spec":{"resources":{"requests":{"storage":"20Gi"}}}}`)
		if _, err := env.cs.CoreV1().PersistentVolumeClaims(ns).Patch(ctx, "data-mysql-0", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		want := resource.MustParse("20Gi")
		eventually(t, 20*time.Second, "data-mysql-0 and its PV at 20Gi", func(ctx context.Context) error {
			pvc, err := env.cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data-mysql-0", metav1.GetOptions{})
			if err != nil {
				return err
			}
			pv, err := env.cs.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
			if err != nil {
				return err
			}
			got, pvSize := pvc.Status.Capacity[corev1.ResourceStorage], pv.Spec.Capacity[corev1.ResourceStorage]
			if got.Cmp(want) != 0 || pvSize.Cmp(want) != 0 {
				return fmt.Errorf("claim capacity %s, volume capacity %s", got.String(), pvSize.String())
			}
			return nil
		})
	})

	t.Run("deleted pod comes back on the same claim", func(t *testing.T) {
		old, err := env.cs.CoreV1().Pods(ns).Get(ctx, "mysql-1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		claim := getPVC(t, "data-mysql-1")
		if err := env.cs.CoreV1().Pods(ns).Delete(ctx, "mysql-1", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "a new mysql-1 Ready on data-mysql-1", func(ctx context.Context) error {
			pod, err := env.cs.CoreV1().Pods(ns).Get(ctx, "mysql-1", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if pod.UID == old.UID {
				return fmt.Errorf("still the old pod")
			}
			if !podReady(pod) {
				return fmt.Errorf("new pod not ready: %s", pod.Status.Phase)
			}
			if got := claimOf(pod, "data"); got != "data-mysql-1" {
				return fmt.Errorf("new pod mounts claim %q", got)
			}
			return nil
		})
		if got := getPVC(t, "data-mysql-1"); got.UID != claim.UID || got.Spec.VolumeName != claim.Spec.VolumeName {
			t.Errorf("data-mysql-1 changed: uid %s -> %s, volume %s -> %s", claim.UID, got.UID, claim.Spec.VolumeName, got.Spec.VolumeName)
		}
	})

	t.Run("scale up binds data-mysql-2, scale down leaves it", func(t *testing.T) {
		scale(t, ns, 3)
		waitStatefulSetReady(t, ns, 3)
		checkVolume(t, 2)
		scale(t, ns, 2)
		eventually(t, 30*time.Second, "pod mysql-2 gone", func(ctx context.Context) error {
			_, err := env.cs.CoreV1().Pods(ns).Get(ctx, "mysql-2", metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("mysql-2 still there (err %v)", err)
		})
		if pvc := getPVC(t, "data-mysql-2"); pvc.Status.Phase != corev1.ClaimBound {
			t.Errorf("data-mysql-2 is %s after scale-down, want Bound (left behind)", pvc.Status.Phase)
		}
	})

	t.Run("Retain keeps a Released volume, Delete takes it", func(t *testing.T) {
		pvName := getPVC(t, "data-mysql-2").Spec.VolumeName
		patchReclaim(t, pvName, corev1.PersistentVolumeReclaimRetain)
		deletePVC(t, "data-mysql-2")
		eventually(t, 30*time.Second, "PV "+pvName+" Released", func(ctx context.Context) error {
			pv, err := env.cs.CoreV1().PersistentVolumes().Get(ctx, pvName, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if pv.Status.Phase != corev1.VolumeReleased {
				return fmt.Errorf("phase %s", pv.Status.Phase)
			}
			return nil
		})
		// Released under Retain must stay: give the provisioner a resync to
		// misbehave in, then check it is still there.
		pollFor(t, 3*time.Second, func() {
			if _, err := env.cs.CoreV1().PersistentVolumes().Get(ctx, pvName, metav1.GetOptions{}); err != nil {
				t.Fatalf("retained PV %s: %v", pvName, err)
			}
		})
		// Patched back to Delete, the released volume is reclaimed.
		patchReclaim(t, pvName, corev1.PersistentVolumeReclaimDelete)
		waitPVGone(t, pvName)

		// And the plain case: a claim deleted under Delete takes its volume.
		scale(t, ns, 3)
		waitStatefulSetReady(t, ns, 3)
		pvName = getPVC(t, "data-mysql-2").Spec.VolumeName
		scale(t, ns, 2)
		waitStatefulSetReady(t, ns, 2)
		deletePVC(t, "data-mysql-2")
		waitPVGone(t, pvName)
	})

	t.Run("overlays/prod passes a server-side dry-run", func(t *testing.T) {
		prod, err := manifests.Build(root, filepath.Join("overlays", "prod"))
		if err != nil {
			t.Fatal(err)
		}
		if err := applyAll(ctx, t, prod, "e2e-walkthrough", true); err != nil {
			t.Fatal(err)
		}
		sts, err := env.cs.AppsV1().StatefulSets(ns).Get(ctx, "mysql", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if *sts.Spec.Replicas != 2 {
			t.Errorf("dry-run changed the StatefulSet: replicas %d", *sts.Spec.Replicas)
		}
	})
}

// TestVersion checks the binaries carry the pinned release, as discovery and
// kubectl report it.
func TestVersion(t *testing.T) {
	info, err := env.cs.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if info.GitVersion != cluster.KubeVersion {
		t.Errorf("server version %q, want %q", info.GitVersion, cluster.KubeVersion)
	}
	out, err := exec.CommandContext(t.Context(), env.cluster.Binaries().Path("kubectl"),
		"--kubeconfig", env.cluster.Kubeconfig(), "version", "-o", "json").Output()
	if err != nil {
		t.Fatalf("kubectl version: %v", err)
	}
	var v struct {
		Client struct{ GitVersion string } `json:"clientVersion"`
		Server struct{ GitVersion string } `json:"serverVersion"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatal(err)
	}
	want := struct{ Client, Server string }{cluster.KubeVersion, cluster.KubeVersion}
	got := struct{ Client, Server string }{v.Client.GitVersion, v.Server.GitVersion}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("kubectl version (-want +got):\n%s", diff)
	}
}

// waitStatefulSetReady waits until StatefulSet ns/mysql has observed its
// latest spec and runs exactly replicas Ready pods.
func waitStatefulSetReady(t *testing.T, ns string, replicas int32) {
	t.Helper()
	eventually(t, 60*time.Second, fmt.Sprintf("StatefulSet %s/mysql at %d/%d Ready", ns, replicas, replicas), func(ctx context.Context) error {
		sts, err := env.cs.AppsV1().StatefulSets(ns).Get(ctx, "mysql", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if sts.Status.ObservedGeneration != sts.Generation || sts.Status.ReadyReplicas != replicas || sts.Status.Replicas != replicas {
			return fmt.Errorf("ready %d, replicas %d, generation %d observed %d", sts.Status.ReadyReplicas, sts.Status.Replicas, sts.Generation, sts.Status.ObservedGeneration)
		}
		return nil
	})
}

// checkVolume asserts the walkthrough's storage facts for one ordinal: the
// claim is Bound, 10Gi, RWO, class mysql-gp2; its PV is an EBS CSI volume with
// the class's reclaim policy and mount options, pinned to the pod's zone.
func checkVolume(t *testing.T, ordinal int) {
	t.Helper()
	ctx := t.Context()
	claimName := fmt.Sprintf("data-mysql-%d", ordinal)
	eventually(t, 30*time.Second, claimName+" Bound", func(ctx context.Context) error {
		pvc, err := env.cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, claimName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if pvc.Status.Phase != corev1.ClaimBound {
			return fmt.Errorf("phase %s", pvc.Status.Phase)
		}
		return nil
	})
	pvc := getPVC(t, claimName)
	pv, err := env.cs.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod, err := env.cs.CoreV1().Pods(ns).Get(ctx, fmt.Sprintf("mysql-%d", ordinal), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	node, err := env.cs.CoreV1().Nodes().Get(ctx, pod.Spec.NodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	type storageFacts struct {
		Capacity, Class, Reclaim, Driver, Zone string
		Modes, MountOptions                    []string
		HandleOK                               bool
	}
	want := storageFacts{
		Capacity: "10Gi", Class: "mysql-gp2", Reclaim: "Delete", Driver: "ebs.csi.aws.com",
		Zone:  node.Labels["topology.kubernetes.io/zone"],
		Modes: []string{"ReadWriteOnce"}, MountOptions: []string{"debug"}, HandleOK: true,
	}
	capacity := pvc.Status.Capacity[corev1.ResourceStorage]
	got := storageFacts{
		Capacity: capacity.String(), Class: ptrString(pvc.Spec.StorageClassName),
		Reclaim: string(pv.Spec.PersistentVolumeReclaimPolicy), Zone: pvZone(pv),
		MountOptions: pv.Spec.MountOptions,
	}
	for _, m := range pvc.Status.AccessModes {
		got.Modes = append(got.Modes, string(m))
	}
	if csi := pv.Spec.CSI; csi != nil {
		got.Driver = csi.Driver
		got.HandleOK = len(csi.VolumeHandle) == len("vol-")+17 && csi.FSType == "ext4"
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s and its PV %s (-want +got):\n%s", claimName, pv.Name, diff)
	}
	if q := pv.Spec.Capacity[corev1.ResourceStorage]; q.Cmp(resource.MustParse("10Gi")) != 0 {
		t.Errorf("PV %s capacity %s, want 10Gi", pv.Name, q.String())
	}
}

func pvZone(pv *corev1.PersistentVolume) string {
	if pv.Spec.NodeAffinity == nil || pv.Spec.NodeAffinity.Required == nil {
		return ""
	}
	for _, term := range pv.Spec.NodeAffinity.Required.NodeSelectorTerms {
		for _, expr := range term.MatchExpressions {
			if expr.Key == "topology.kubernetes.io/zone" && len(expr.Values) == 1 {
				return expr.Values[0]
			}
		}
	}
	return ""
}

func ptrString(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func getPVC(t *testing.T, name string) *corev1.PersistentVolumeClaim {
	t.Helper()
	pvc, err := env.cs.CoreV1().PersistentVolumeClaims(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pvc
}

func deletePVC(t *testing.T, name string) {
	t.Helper()
	if err := env.cs.CoreV1().PersistentVolumeClaims(ns).Delete(t.Context(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "PVC "+name+" deleted", func(ctx context.Context) error {
		_, err := env.cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (err %v)", err)
	})
}

func waitPVGone(t *testing.T, name string) {
	t.Helper()
	eventually(t, 30*time.Second, "PV "+name+" deleted", func(ctx context.Context) error {
		pv, err := env.cs.CoreV1().PersistentVolumes().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		return fmt.Errorf("still there, phase %s, reclaim %s", pv.Status.Phase, pv.Spec.PersistentVolumeReclaimPolicy)
	})
}

func patchReclaim(t *testing.T, pvName string, policy corev1.PersistentVolumeReclaimPolicy) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"persistentVolumeReclaimPolicy":%q}}`, policy)
	if _, err := env.cs.CoreV1().PersistentVolumes().Patch(t.Context(), pvName, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// scale is `kubectl scale statefulset mysql --replicas=n`: the scale subresource.
func scale(t *testing.T, ns string, n int32) {
	t.Helper()
	s := &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "mysql", Namespace: ns}, Spec: autoscalingv1.ScaleSpec{Replicas: n}}
	if _, err := env.cs.AppsV1().StatefulSets(ns).UpdateScale(t.Context(), "mysql", s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// readyContainers is the READY column of `kubectl get pod`.
func readyContainers(ctx context.Context, name string) string {
	pod, err := env.cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err.Error()
	}
	ready := 0
	for _, s := range pod.Status.ContainerStatuses {
		if s.Ready {
			ready++
		}
	}
	return fmt.Sprintf("%d/%d", ready, len(pod.Spec.Containers))
}

// readyEndpoints lists the pods behind a Service's ready endpoints.
func readyEndpoints(ctx context.Context, service string) []string {
	list, err := env.cs.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + service})
	if err != nil {
		return nil
	}
	var pods []string
	for _, s := range list.Items {
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && *ep.Conditions.Ready && ep.TargetRef != nil {
				pods = append(pods, ep.TargetRef.Name)
			}
		}
	}
	return pods
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func claimOf(pod *corev1.Pod, volume string) string {
	for _, v := range pod.Spec.Volumes {
		if v.Name == volume && v.PersistentVolumeClaim != nil {
			return v.PersistentVolumeClaim.ClaimName
		}
	}
	return ""
}

// pollFor runs check every 200ms for d: a condition that must hold
// throughout, not just become true.
func pollFor(t *testing.T, d time.Duration, check func()) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		check()
		time.Sleep(200 * time.Millisecond)
	}
}
