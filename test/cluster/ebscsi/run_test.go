package ebscsi

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
)

// TestRunWiring runs the whole simulation against a fake API server, doing
// by hand what kube-controller-manager and the scheduler would, to check
// that the loops are wired to the right objects. The real behaviour is
// tested against the local control plane.
func TestRunWiring(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	client := fake.NewClientset()
	for _, node := range kwokNodes() {
		create(t, client.CoreV1().Nodes().Create, node)
	}
	expandable := mysqlGP2()
	expandable.AllowVolumeExpansion = new(true)
	create(t, client.StorageV1().StorageClasses().Create, expandable)
	bad := mysqlGP2()
	bad.Name, bad.Parameters = "bad", map[string]string{"type": "gp9"}
	create(t, client.StorageV1().StorageClasses().Create, bad)

	done := make(chan error, 1)
	go func() { done <- run(ctx, clients{client, client, client, client}, Options{}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run() = %v", err)
		}
	})

	node := eventually(t, "node-a registered", func() (*corev1.Node, bool) {
		csiNode, err := client.StorageV1().CSINodes().Get(ctx, "node-a", metav1.GetOptions{})
		node, _ := client.CoreV1().Nodes().Get(ctx, "node-a", metav1.GetOptions{})
		return node, err == nil && len(csiNode.Spec.Drivers) == 1 && node.Labels[driverZoneKey] == "ap-northeast-2a"
	})
	if got := node.Annotations[nodeIDAnnotation]; !strings.Contains(got, instanceID("node-a")) {
		t.Errorf("node-a %s = %q, want its instance ID", nodeIDAnnotation, got)
	}

	claim := pendingClaim(t, client, "data-mysql-0", "mysql-gp2", "node-b")
	pv := eventually(t, "PV provisioned", func() (*corev1.PersistentVolume, bool) {
		pv, err := client.CoreV1().PersistentVolumes().Get(ctx, "pvc-"+string(claim.UID), metav1.GetOptions{})
		return pv, err == nil
	})
	checkProvisioned(t, pv, claim)

	bindAndExpand(t, client, claim, pv, "20Gi")
	eventually(t, "claim expanded", func() (*corev1.PersistentVolumeClaim, bool) {
		c, err := client.CoreV1().PersistentVolumeClaims("mysql").Get(ctx, claim.Name, metav1.GetOptions{})
		pv, _ := client.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{})
		return c, err == nil && c.Status.Capacity.Storage().String() == "20Gi" && pv.Spec.Capacity.Storage().String() == "20Gi"
	})

	badClaim := pendingClaim(t, client, "data-bad-0", "bad", "node-a")
	eventually(t, "ProvisioningFailed event", func() (*corev1.Event, bool) {
		events, _ := client.CoreV1().Events("mysql").List(ctx, metav1.ListOptions{})
		i := slices.IndexFunc(events.Items, func(e corev1.Event) bool {
			return e.InvolvedObject.UID == badClaim.UID && e.Reason == "ProvisioningFailed" &&
				strings.Contains(e.Message, `StorageClass/bad: invalid AWS VolumeType "gp9"`)
		})
		return nil, i >= 0
	})

	// Released: the Delete volume goes, the Retain one stays.
	retained := pendingClaim(t, client, "data-mysql-1", "mysql-gp2", "node-c")
	retainedPV := eventually(t, "second PV provisioned", func() (*corev1.PersistentVolume, bool) {
		pv, err := client.CoreV1().PersistentVolumes().Get(ctx, "pvc-"+string(retained.UID), metav1.GetOptions{})
		return pv, err == nil
	})
	retainedPV.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimRetain
	retainedPV = update(t, client.CoreV1().PersistentVolumes().Update, retainedPV)
	release(t, client, retainedPV.Name)
	release(t, client, pv.Name)
	eventually(t, "Delete PV deleted", func() (*corev1.PersistentVolume, bool) {
		_, err := client.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{})
		return nil, err != nil
	})
	if _, err := client.CoreV1().PersistentVolumes().Get(ctx, retainedPV.Name, metav1.GetOptions{}); err != nil {
		t.Errorf("Retain PV: %v, want it kept", err)
	}
}

// checkProvisioned checks the parts of pv that the library adds to ours.
func checkProvisioned(t *testing.T, pv *corev1.PersistentVolume, claim *corev1.PersistentVolumeClaim) {
	t.Helper()
	if got := pv.Annotations["pv.kubernetes.io/provisioned-by"]; got != DefaultDriverName {
		t.Errorf("provisioned-by = %q, want %q", got, DefaultDriverName)
	}
	if pv.Spec.StorageClassName != "mysql-gp2" || pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.UID != claim.UID {
		t.Errorf("storageClassName %q, claimRef %+v; want mysql-gp2 and the claim", pv.Spec.StorageClassName, pv.Spec.ClaimRef)
	}
	if !slices.Contains(pv.Finalizers, "external-provisioner.volume.kubernetes.io/finalizer") {
		t.Errorf("finalizers = %v, want the external-provisioner's", pv.Finalizers)
	}
	if zone := zoneOf(pv); zone != "ap-northeast-2b" {
		t.Errorf("zone = %q, want the selected node's", zone)
	}
}

// pendingClaim creates a claim as the scheduler and the PV controller leave
// it once a pod using it was scheduled on node.
func pendingClaim(t *testing.T, client kubernetes.Interface, name, class, node string) *corev1.PersistentVolumeClaim {
	t.Helper()
	claim := dataClaim(name, "10Gi") // with a UID, which the fake API server does not assign
	claim.Spec.StorageClassName = &class
	claim.Annotations = map[string]string{
		"volume.kubernetes.io/storage-provisioner": DefaultDriverName,
		"volume.kubernetes.io/selected-node":       node,
	}
	claim.Status.Phase = corev1.ClaimPending
	return create(t, client.CoreV1().PersistentVolumeClaims("mysql").Create, claim)
}

// bindAndExpand binds claim to pv as the PV controller would, then asks for
// size.
func bindAndExpand(t *testing.T, client kubernetes.Interface, claim *corev1.PersistentVolumeClaim, pv *corev1.PersistentVolume, size string) {
	t.Helper()
	ctx := context.Background()
	pv.Status.Phase = corev1.VolumeBound
	if _, err := client.CoreV1().PersistentVolumes().UpdateStatus(ctx, pv, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	live, err := client.CoreV1().PersistentVolumeClaims("mysql").Get(ctx, claim.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	live.Spec.VolumeName = pv.Name
	live.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse(size)
	live.Status.Phase = corev1.ClaimBound
	live.Status.Capacity = pv.Spec.Capacity
	if _, err := client.CoreV1().PersistentVolumeClaims("mysql").Update(ctx, live, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// release marks the PV called name Released, as the PV controller does once
// its claim is deleted.
func release(t *testing.T, client kubernetes.Interface, name string) {
	t.Helper()
	ctx := context.Background()
	pv, err := client.CoreV1().PersistentVolumes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pv.Status.Phase = corev1.VolumeReleased
	if _, err := client.CoreV1().PersistentVolumes().UpdateStatus(ctx, pv, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func create[T any](t *testing.T, f func(context.Context, T, metav1.CreateOptions) (T, error), obj T) T {
	t.Helper()
	got, err := f(context.Background(), obj, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func update[T any](t *testing.T, f func(context.Context, T, metav1.UpdateOptions) (T, error), obj T) T {
	t.Helper()
	got, err := f(context.Background(), obj, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// eventually polls cond until it holds, for at most ten seconds.
func eventually[T any](t *testing.T, what string, cond func() (T, bool)) T {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, ok := cond()
		if ok {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
