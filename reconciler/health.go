package reconciler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

// healthKinds are the kinds whose readiness a sync waits for; others are
// healthy once applied.
var healthKinds = []string{"StatefulSet", "Deployment", "DaemonSet", "ReplicaSet", "Job",
	"PersistentVolumeClaim", "Service", "CustomResourceDefinition", "Pod"}

// HealthError says which objects were not healthy, and why.
type HealthError struct {
	// Failed is true when an object reached a terminal failure, false on a
	// timeout.
	Failed  bool
	Objects []string
}

func (e *HealthError) Error() string {
	what := "not healthy in time"
	if e.Failed {
		what = "failed"
	}
	return what + ": " + strings.Join(e.Objects, "; ")
}

// getter reads one live object; the Applier's resource mapping provides it.
type getter func(ctx context.Context, obj *unstructured.Unstructured) (*unstructured.Unstructured, error)

// WaitHealthy polls the objects' kstatus until all are Current, one Failed
// (stop early: waiting longer will not help), or ctx ends (timeout, or a newer
// revision superseding this one).
func WaitHealthy(ctx context.Context, get getter, objs []*unstructured.Unstructured, interval time.Duration) error {
	pending := slices.Clone(objs)
	for {
		var notReady []string
		var failed []string
		next := pending[:0]
		for _, obj := range pending {
			live, err := get(ctx, obj)
			if err != nil {
				if ctx.Err() != nil {
					return ctxHealthErr(ctx, append(notReady, fmt.Sprintf("%s: %v", RefOf(obj), err)))
				}
				notReady = append(notReady, fmt.Sprintf("%s: %v", RefOf(obj), err))
				next = append(next, obj)
				continue
			}
			res, err := status.Compute(live)
			if err != nil {
				return fmt.Errorf("%s: compute status: %w", RefOf(obj), err)
			}
			switch res.Status {
			case status.CurrentStatus:
			case status.FailedStatus:
				failed = append(failed, fmt.Sprintf("%s: %s", RefOf(obj), res.Message))
			default:
				notReady = append(notReady, fmt.Sprintf("%s: %s: %s", RefOf(obj), res.Status, res.Message))
				next = append(next, obj)
			}
		}
		pending = next
		if len(failed) > 0 {
			return &HealthError{Failed: true, Objects: failed}
		}
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctxHealthErr(ctx, notReady)
		case <-time.After(interval):
		}
	}
}

// needsHealthCheck picks the objects of a sync worth waiting for: those it
// created or changed, of kinds with a readiness notion.
func needsHealthCheck(changes []Change, objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for i, obj := range objs { // changes[i] is objs[i]'s; prunes follow them
		if c := changes[i]; c.Action != Unchanged && slices.Contains(healthKinds, c.Ref.Kind) {
			out = append(out, obj)
		}
	}
	return out
}

// ctxHealthErr is the verdict when the wait ends: a timeout is a health
// failure naming what was not ready; a cancellation is passed on.
func ctxHealthErr(ctx context.Context, notReady []string) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &HealthError{Objects: notReady}
	}
	return ctx.Err()
}
