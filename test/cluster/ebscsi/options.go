package ebscsi

import (
	"log/slog"
	"time"
)

// DefaultDriverName is the name the real Amazon EBS CSI driver registers.
const DefaultDriverName = "ebs.csi.aws.com"

// DefaultResyncPeriod is how often the informers replay every object when
// Options.ResyncPeriod is zero: the external-provisioner's default.
const DefaultResyncPeriod = 15 * time.Minute

// Options configures Run. The zero value simulates the real driver.
type Options struct {
	// DriverName is the CSI driver name: the CSIDriver object, the CSINode
	// entries, the StorageClass provisioner this simulation serves and the
	// driver of the PVs it creates. Empty means DefaultDriverName. Another
	// name lets two simulated drivers share one control plane.
	DriverName string

	// Logger receives the simulation's own records (at DEBUG, errors at
	// ERROR) and those of the provisioning library, the informers and the
	// event broadcasters, which are demoted below DEBUG (to DEBUG-4 and
	// lower) unless they are errors, so that a test log stays readable. Nil
	// discards everything.
	Logger *slog.Logger

	// ResyncPeriod is how often the informers replay every object, which
	// retries provisioning, deletion and expansion that failed for a reason
	// the API server cannot signal (a StorageClass fixed after a claim). Zero
	// means DefaultResyncPeriod.
	ResyncPeriod time.Duration
}

// withDefaults returns o with its zero fields filled in.
func (o Options) withDefaults() Options {
	if o.DriverName == "" {
		o.DriverName = DefaultDriverName
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ResyncPeriod <= 0 {
		o.ResyncPeriod = DefaultResyncPeriod
	}
	return o
}
