package main

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	// idleWindow and idleCPU define an idle control plane: under idleCPU
	// of CPU time in idleWindow (a tenth of a core).
	idleWindow = 2 * time.Second
	idleCPU    = idleWindow / 10
	// settleTimeout bounds how long quiesce waits for either.
	settleTimeout = 5 * time.Minute
)

// quiesce deletes the namespaces of finished runs, waits until they are
// gone, then until the control plane is idle, so that no run pays for the
// one before it: a cold apply of 1,000 objects sets off more than ten
// CPU-seconds of controller work (ReplicaSets, Pods, status updates, and the
// pods that no longer fit on the nodes) that goes on after the tool exited.
func (b *bench) quiesce(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	for _, ns := range b.used {
		err := b.cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete namespace %s: %w", ns, err)
		}
	}
	for _, ns := range b.used {
		for {
			_, err := b.cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				break
			}
			if ctx.Err() != nil {
				return fmt.Errorf("namespace %s not gone after %s", ns, settleTimeout)
			}
			if err := pause(ctx, 500*time.Millisecond); err != nil {
				return err
			}
		}
	}
	b.used = nil
	for {
		before, err := b.cluster.CPUTime()
		if err != nil {
			return err
		}
		if err := pause(ctx, idleWindow); err != nil {
			return fmt.Errorf("the control plane did not become idle within %s", settleTimeout)
		}
		after, err := b.cluster.CPUTime()
		if err != nil {
			return err
		}
		if after-before < idleCPU {
			return nil
		}
	}
}

// pause waits for d or until ctx ends.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
