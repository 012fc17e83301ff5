package ebscsi

import (
	"context"
	"fmt"
	"log/slog"

	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
)

// registrar plays kubelet's part in registering the driver's node plugin,
// which no kubelet runs here: for every Node it keeps a CSINode with the
// driver's entry and the Node's topology labels and node-ID annotation.
type registrar struct {
	driverName string
	client     kubernetes.Interface
	nodes      corelisters.NodeLister
	csiNodes   storagelisters.CSINodeLister
	queue      *keyQueue
	log        *slog.Logger
}

// newRegistrar watches Nodes, and CSINodes so that one deleted or edited by
// hand is put back, through factory, which the caller starts.
func newRegistrar(factory informers.SharedInformerFactory, client kubernetes.Interface, driverName string, log *slog.Logger) (*registrar, error) {
	r := &registrar{
		driverName: driverName,
		client:     client,
		nodes:      factory.Core().V1().Nodes().Lister(),
		csiNodes:   factory.Storage().V1().CSINodes().Lister(),
		queue:      newKeyQueue("ebscsi-registrar", log),
		log:        log,
	}
	// CSINodes are named after their Node, so both share one key.
	if _, err := factory.Core().V1().Nodes().Informer().AddEventHandler(r.queue.handler()); err != nil {
		return nil, err
	}
	if _, err := factory.Storage().V1().CSINodes().Informer().AddEventHandler(r.queue.handler()); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *registrar) run(ctx context.Context) { r.queue.run(ctx, r.sync) }

// sync registers the driver on the Node called name. A deleted Node needs
// nothing: the garbage collector deletes its CSINode through the owner
// reference.
func (r *registrar) sync(ctx context.Context, name string) error {
	node, err := r.nodes.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	} else if err != nil {
		return err
	}
	if node.DeletionTimestamp != nil {
		return nil
	}
	live, err := r.csiNodes.Get(name)
	if apierrors.IsNotFound(err) {
		live = nil
	} else if err != nil {
		return err
	}
	if want, changed := desiredCSINode(live, node, r.driverName); changed {
		if err := r.saveCSINode(ctx, live, want); err != nil {
			return err
		}
	}
	patch, err := nodeRegistrationPatch(node, r.driverName)
	if err != nil || patch == nil {
		return err
	}
	_, err = r.client.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		return fmt.Errorf("Node/%s: label: %w", name, err)
	}
	r.log.Debug("labelled node for driver", "node", name, "patch", string(patch))
	return nil
}

// saveCSINode creates want, or updates live to want.
func (r *registrar) saveCSINode(ctx context.Context, live, want *storagev1.CSINode) error {
	name := want.Name
	api := r.client.StorageV1().CSINodes()
	var err error
	if live == nil {
		_, err = api.Create(ctx, want, metav1.CreateOptions{})
	} else {
		_, err = api.Update(ctx, want, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("CSINode/%s: save: %w", name, err)
	}
	r.log.Debug("registered driver on node", "node", name, "nodeID", instanceID(name))
	return nil
}
