package ebscsi

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/go-logr/logr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v13/controller"
)

// Run simulates the Amazon EBS CSI driver against the API server of cfg
// until ctx is done: it registers the driver (CSIDriver, and a CSINode for
// every Node, as kubelet would), provisions and deletes volumes for claims
// of StorageClasses whose provisioner is the driver, and grows volumes whose
// claims ask for more. It returns an error only if it cannot start; shutdown
// through ctx returns nil.
func Run(ctx context.Context, cfg *rest.Config, opts Options) error {
	c, err := newClients(cfg)
	if err != nil {
		return err
	}
	return run(ctx, c, opts)
}

// run is Run with its clients made.
func run(ctx context.Context, c clients, opts Options) error {
	opts = opts.withDefaults()
	opts.Logger = opts.Logger.With("driver", opts.DriverName)
	if err := registerDriver(ctx, c.driver, opts.DriverName); err != nil {
		return err
	}
	opts.Logger.Debug("registered CSIDriver")
	// The library, the informers and the event broadcasters log through the
	// logger in their context.
	libCtx := logr.NewContext(ctx, libraryLogger(opts.Logger, "ebscsi"))
	l, err := newLoops(libCtx, c, opts)
	if err != nil {
		return err
	}
	l.run(libCtx)
	return nil
}

// loops are the simulation's control loops, sharing one informer factory.
type loops struct {
	factory   informers.SharedInformerFactory
	registrar *registrar
	resizer   *resizer
	provision *controller.ProvisionController
	log       *slog.Logger
}

func newLoops(ctx context.Context, c clients, opts Options) (*loops, error) {
	factory := informers.NewSharedInformerFactory(c.driver, opts.ResyncPeriod)
	reg, err := newRegistrar(factory, c.kubelet, opts.DriverName, opts.Logger)
	if err != nil {
		return nil, err
	}
	rsz, err := newResizer(ctx, factory, c.resizer, opts.DriverName, opts.Logger)
	if err != nil {
		return nil, err
	}
	prov := newProvisionController(ctx, factory, c.provisioner, opts)
	return &loops{factory: factory, registrar: reg, resizer: rsz, provision: prov, log: opts.Logger}, nil
}

// run starts the informers and runs the loops until ctx is done, then
// waits for all of them to stop.
func (l *loops) run(ctx context.Context) {
	l.factory.StartWithContext(ctx)
	defer l.factory.Shutdown()
	l.factory.WaitForCacheSync(ctx.Done())
	if ctx.Err() != nil {
		return
	}
	var wg, provisionWorkers sync.WaitGroup
	l.provision.ControllerWaitGroup(&provisionWorkers)
	wg.Go(func() { l.registrar.run(ctx) })
	wg.Go(func() { l.resizer.run(ctx) })
	wg.Go(func() {
		l.provision.Run(ctx)
		provisionWorkers.Wait()
	})
	l.log.Debug("simulated driver running")
	wg.Wait()
}

// clients are one clientset per role, each with the user agent, and so the
// field manager name, of the component it stands in for.
type clients struct {
	driver, provisioner, resizer, kubelet kubernetes.Interface
}

func newClients(cfg *rest.Config) (clients, error) {
	var c clients
	for agent, dst := range map[string]*kubernetes.Interface{
		"aws-ebs-csi-driver": &c.driver,
		"csi-provisioner":    &c.provisioner,
		"csi-resizer":        &c.resizer,
		"kubelet":            &c.kubelet,
	} {
		rc := rest.CopyConfig(cfg)
		rc.UserAgent = agent
		if rc.QPS == 0 {
			// A StatefulSet scale-up should not queue behind client-side
			// throttling in a test.
			rc.QPS, rc.Burst = 50, 100
		}
		cs, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return clients{}, fmt.Errorf("client %s: %w", agent, err)
		}
		*dst = cs
	}
	return c, nil
}
