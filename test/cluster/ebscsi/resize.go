package ebscsi

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v13/util"
)

// expansion is what growing one claim's volume takes.
type expansion struct {
	// requested is the claim's new spec.resources.requests.storage.
	requested resource.Quantity
	// capacity is the volume's size afterwards: requested rounded up to
	// whole GiB, or the PV's size if that is already enough.
	capacity resource.Quantity
	// resizePV is whether the PV's spec.capacity must grow to capacity.
	resizePV bool
}

// expansionFor decides whether claim, bound to pv of class, asks for more
// than it has, as the external-resizer does, and if so what to do. Only
// volumes of driverName in a class that allows expansion grow.
func expansionFor(driverName string, claim *corev1.PersistentVolumeClaim, pv *corev1.PersistentVolume, class *storagev1.StorageClass) (expansion, bool) {
	if claim.Status.Phase != corev1.ClaimBound || pv == nil || claim.Spec.VolumeName != pv.Name {
		return expansion{}, false
	}
	if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != driverName {
		return expansion{}, false
	}
	if class == nil || class.AllowVolumeExpansion == nil || !*class.AllowVolumeExpansion {
		return expansion{}, false
	}
	want, ok := claim.Spec.Resources.Requests[corev1.ResourceStorage]
	have, hasStatus := claim.Status.Capacity[corev1.ResourceStorage]
	if !ok || !hasStatus || want.Cmp(have) <= 0 {
		return expansion{}, false
	}
	pvSize := pv.Spec.Capacity[corev1.ResourceStorage]
	if pvSize.Cmp(want) >= 0 {
		return expansion{requested: want, capacity: pvSize}, true
	}
	return expansion{requested: want, capacity: roundUpGiB(want), resizePV: true}, true
}

// expandedClaimStatus is status once the controller and node expansion are
// done, as kubelet leaves it: capacity is the volume's new size, the
// allocation is recorded, and no resize is in progress or pending.
func expandedClaimStatus(status corev1.PersistentVolumeClaimStatus, e expansion) corev1.PersistentVolumeClaimStatus {
	s := status.DeepCopy()
	if s.Capacity == nil {
		s.Capacity = corev1.ResourceList{}
	}
	s.Capacity[corev1.ResourceStorage] = e.capacity
	if s.AllocatedResources == nil {
		s.AllocatedResources = corev1.ResourceList{}
	}
	s.AllocatedResources[corev1.ResourceStorage] = e.requested
	delete(s.AllocatedResourceStatuses, corev1.ResourceStorage)
	if len(s.AllocatedResourceStatuses) == 0 {
		s.AllocatedResourceStatuses = nil
	}
	s.Conditions = slices.DeleteFunc(s.Conditions, func(c corev1.PersistentVolumeClaimCondition) bool {
		return c.Type == corev1.PersistentVolumeClaimResizing || c.Type == corev1.PersistentVolumeClaimFileSystemResizePending
	})
	return *s
}

// resizer plays the external-resizer and, since no kubelet runs here, the
// node expansion that kubelet would finish: both in one step.
type resizer struct {
	driverName string
	client     kubernetes.Interface
	claims     corelisters.PersistentVolumeClaimLister
	volumes    corelisters.PersistentVolumeLister
	classes    storagelisters.StorageClassLister
	queue      *keyQueue
	// resizerEvents are the external-resizer's Events, kubeletEvents
	// kubelet's for the node expansion.
	resizerEvents, kubeletEvents record.EventRecorder
	log                          *slog.Logger
}

// newResizer watches claims through factory, which the caller starts. Its
// Events stop being sent when ctx is done.
func newResizer(ctx context.Context, factory informers.SharedInformerFactory, client kubernetes.Interface, driverName string, log *slog.Logger) (*resizer, error) {
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	r := &resizer{
		driverName:    driverName,
		client:        client,
		claims:        factory.Core().V1().PersistentVolumeClaims().Lister(),
		volumes:       factory.Core().V1().PersistentVolumes().Lister(),
		classes:       factory.Storage().V1().StorageClasses().Lister(),
		queue:         newKeyQueue("ebscsi-resizer", log),
		resizerEvents: broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "external-resizer " + driverName}),
		kubeletEvents: broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kubelet"}),
		log:           log,
	}
	if _, err := factory.Core().V1().PersistentVolumeClaims().Informer().AddEventHandler(r.queue.handler()); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *resizer) run(ctx context.Context) { r.queue.run(ctx, r.sync) }

// sync grows the volume of the claim with key "namespace/name" if it asks
// for more than it has.
func (r *resizer) sync(ctx context.Context, key string) error {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return err
	}
	claim, err := r.claims.PersistentVolumeClaims(namespace).Get(name)
	if apierrors.IsNotFound(err) || (err == nil && claim.Spec.VolumeName == "") {
		return nil
	} else if err != nil {
		return err
	}
	pv, err := r.volumes.Get(claim.Spec.VolumeName)
	if apierrors.IsNotFound(err) {
		return nil
	} else if err != nil {
		return err
	}
	class, err := r.classes.Get(util.GetPersistentVolumeClaimClass(claim))
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	e, ok := expansionFor(r.driverName, claim, pv, class)
	if !ok {
		return nil
	}
	return r.expand(ctx, claim, pv, e)
}

// expand writes e: the PV first, then the claim's status, as the
// external-resizer and kubelet do.
func (r *resizer) expand(ctx context.Context, claim *corev1.PersistentVolumeClaim, pv *corev1.PersistentVolume, e expansion) error {
	r.resizerEvents.Eventf(claim, corev1.EventTypeNormal, "Resizing", "External resizer is resizing volume %s", pv.Name)
	if e.resizePV {
		if err := r.resizePV(ctx, pv.Name, e.capacity); err != nil {
			r.resizerEvents.Eventf(claim, corev1.EventTypeWarning, "VolumeResizeFailed", "resize volume %q by resizer %q failed: %v", pv.Name, r.driverName, err)
			return err
		}
	}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		live, err := r.client.CoreV1().PersistentVolumeClaims(claim.Namespace).Get(ctx, claim.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		live.Status = expandedClaimStatus(live.Status, e)
		_, err = r.client.CoreV1().PersistentVolumeClaims(claim.Namespace).UpdateStatus(ctx, live, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("PersistentVolumeClaim/%s/%s: expand: %w", claim.Namespace, claim.Name, err)
	}
	if util.CheckPersistentVolumeClaimModeBlock(claim) {
		r.resizerEvents.Event(claim, corev1.EventTypeNormal, "VolumeResizeSuccessful", "Resize volume succeeded")
	} else {
		r.resizerEvents.Event(claim, corev1.EventTypeNormal, "FileSystemResizeRequired", "Require file system resize of volume on node")
		r.kubeletEvents.Eventf(claim, corev1.EventTypeNormal, "FileSystemResizeSuccessful", "MountVolume.NodeExpandVolume succeeded for volume %q", pv.Name)
	}
	r.log.Debug("expanded volume", "pvc", claim.Namespace+"/"+claim.Name, "pv", pv.Name, "capacity", e.capacity.String())
	return nil
}

// resizePV grows the PV's spec.capacity to size.
func (r *resizer) resizePV(ctx context.Context, name string, size resource.Quantity) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		pv, err := r.client.CoreV1().PersistentVolumes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if current := pv.Spec.Capacity[corev1.ResourceStorage]; current.Cmp(size) >= 0 {
			return nil
		}
		if pv.Spec.Capacity == nil {
			pv.Spec.Capacity = corev1.ResourceList{}
		}
		pv.Spec.Capacity[corev1.ResourceStorage] = size
		_, err = r.client.CoreV1().PersistentVolumes().Update(ctx, pv, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("PersistentVolume/%s: resize: %w", name, err)
	}
	return nil
}
