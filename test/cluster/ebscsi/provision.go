package ebscsi

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	mathrand "math/rand/v2"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v13/controller"
)

// provisioner is the driver's CreateVolume and DeleteVolume behind the
// external-provisioner, for the provisioning library to call. The library
// calls it from several workers at once.
type provisioner struct {
	driverName string
	identity   string
	nodes      corelisters.NodeLister
	log        *slog.Logger
	// failures holds the last error logged for each failing claim (by UID),
	// so that a claim retried with backoff is logged once per distinct
	// error; the library's Events report every attempt.
	failures sync.Map
}

var (
	_ controller.Provisioner      = (*provisioner)(nil)
	_ controller.BlockProvisioner = (*provisioner)(nil)
)

// newProvisionController is the library's controller set up as the driver's
// Helm chart sets up the external-provisioner, except that leader election
// is off, and sharing factory's informers, which the caller starts.
func newProvisionController(ctx context.Context, factory informers.SharedInformerFactory, client kubernetes.Interface, opts Options) *controller.ProvisionController {
	p := &provisioner{
		driverName: opts.DriverName,
		identity:   provisionerIdentity(opts.DriverName),
		nodes:      factory.Core().V1().Nodes().Lister(),
		log:        opts.Logger,
	}
	return controller.NewProvisionController(ctx, client, opts.DriverName, p,
		controller.LeaderElection(false),
		controller.ResyncPeriod(opts.ResyncPeriod),
		// Retry for ever, from 1s doubling up to 5m (--retry-interval-*).
		controller.FailedProvisionThreshold(0),
		controller.FailedDeleteThreshold(0),
		controller.RateLimiter(workqueue.NewTypedItemExponentialFailureRateLimiter[string](time.Second, 5*time.Minute)),
		controller.CreateProvisionedPVLimiter(workqueue.DefaultTypedControllerRateLimiter[string]()),
		// The external-provisioner's finalizer on Delete-policy PVs; the
		// library drops it when the policy becomes Retain.
		controller.AddFinalizer(true),
		controller.ClaimsInformer(factory.Core().V1().PersistentVolumeClaims().Informer()),
		controller.VolumesInformer(factory.Core().V1().PersistentVolumes().Informer()),
		controller.ClassesInformer(factory.Storage().V1().StorageClasses().Informer()),
	)
}

// provisionerIdentity is what the external-provisioner calls itself at start:
// milliseconds since the epoch, a random number and the driver name.
func provisionerIdentity(driverName string) string {
	return strconv.FormatInt(time.Now().UnixMilli(), 10) + "-" + strconv.Itoa(mathrand.IntN(10000)) + "-" + driverName
}

// Provision "creates" an EBS volume for opts.PVC and returns its PV.
func (p *provisioner) Provision(ctx context.Context, opts controller.ProvisionOptions) (*corev1.PersistentVolume, controller.ProvisioningState, error) {
	req := provisionRequest{
		driverName: p.driverName,
		identity:   p.identity,
		class:      opts.StorageClass,
		claim:      opts.PVC,
		pvName:     opts.PVName,
	}
	if state, err := p.placement(&req, opts.SelectedNodeName); err != nil {
		return nil, state, err
	}
	id, err := newVolumeID(rand.Reader)
	if err != nil {
		return nil, controller.ProvisioningNoChange, err
	}
	req.volumeID = id
	pv, err := newPV(req)
	var ignored *controller.IgnoredError
	if errors.As(err, &ignored) {
		return nil, controller.ProvisioningFinished, ignored
	} else if err != nil {
		p.logFailure(ctx, opts.PVC, err)
		return nil, controller.ProvisioningFinished, err
	}
	p.failures.Delete(opts.PVC.UID)
	p.log.Debug("created volume", "pvc", opts.PVC.Namespace+"/"+opts.PVC.Name, "pv", pv.Name,
		"volumeHandle", id, "capacity", pv.Spec.Capacity.Storage().String(), "zone", zoneOf(pv))
	return pv, controller.ProvisioningFinished, nil
}

// placement gives req what decides the volume's zone: the Node called
// selected, or all Nodes when none is. A selected Node that is gone sends
// the claim back to the scheduler, as the external-provisioner does.
func (p *provisioner) placement(req *provisionRequest, selected string) (controller.ProvisioningState, error) {
	if selected == "" {
		nodes, err := p.nodes.List(labels.Everything())
		req.nodes = nodes
		return controller.ProvisioningNoChange, err
	}
	node, err := p.nodes.Get(selected)
	if apierrors.IsNotFound(err) {
		return controller.ProvisioningReschedule, fmt.Errorf("selected Node/%s: %w", selected, err)
	}
	req.selectedNode = node
	return controller.ProvisioningNoChange, err
}

// logFailure logs err for claim at ERROR the first time, at DEBUG when it
// repeats.
func (p *provisioner) logFailure(ctx context.Context, claim *corev1.PersistentVolumeClaim, err error) {
	level := slog.LevelError
	if last, seen := p.failures.Swap(claim.UID, err.Error()); seen && last == err.Error() {
		level = slog.LevelDebug
	}
	p.log.Log(ctx, level, "provisioning failed", "pvc", claim.Namespace+"/"+claim.Name, "err", err)
}

// Delete "deletes" the EBS volume behind pv. The library then deletes pv.
func (p *provisioner) Delete(ctx context.Context, pv *corev1.PersistentVolume) error {
	if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != p.driverName {
		return &controller.IgnoredError{Reason: "not a volume of driver " + p.driverName}
	}
	p.log.Debug("deleted volume", "pv", pv.Name, "volumeHandle", pv.Spec.CSI.VolumeHandle)
	return nil
}

// SupportsBlock is true: EBS volumes can be attached as raw block devices.
func (p *provisioner) SupportsBlock(context.Context) bool { return true }

// zoneOf is the zone a PV built by buildPV is pinned to.
func zoneOf(pv *corev1.PersistentVolume) string {
	if a := pv.Spec.NodeAffinity; a != nil && a.Required != nil && len(a.Required.NodeSelectorTerms) > 0 {
		if e := a.Required.NodeSelectorTerms[0].MatchExpressions; len(e) > 0 && len(e[0].Values) > 0 {
			return e[0].Values[0]
		}
	}
	return ""
}
