package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/gitopsd/gitopsd/reconciler"
)

// Leader election timing. A standby counts the lease from when it last saw
// the leader renew it, and it looks every retryPeriod (with client-go's
// jitter, up to 1.2x): it takes over at most about leaseDuration + 2 x 2.4 s
// after a leader dies without releasing the Lease, 17 s, within issue 5's
// 20 s (with a 15 s lease it took 19.5 s). A clean shutdown releases the
// Lease at once.
const (
	leaseDuration = 12 * time.Second
	renewDeadline = 8 * time.Second
	retryPeriod   = 2 * time.Second
)

// errLostLeadership ends the process: a former leader may hold stale state,
// so it restarts as a standby rather than carry on.
var errLostLeadership = errors.New("lost leadership")

// leading says whether this process syncs: always without election.
type leading struct{ on atomic.Bool }

func (l *leading) Leading() bool { return l.on.Load() }

// runLeader runs work while this process holds the Lease name in
// namespace, and only while fence can prove it does (work's context ends
// the moment that proof lapses); without election it runs work at once.
func runLeader(ctx context.Context, o *options, cs kubernetes.Interface, state *leading, fence *fence, logger *slog.Logger, work func(context.Context) error) error {
	if !o.leaderElect {
		state.on.Store(true)
		return work(ctx)
	}
	host, _ := os.Hostname()
	id := fmt.Sprintf("%s_%s", host, uuid.NewUUID())
	if err := checkLease(ctx, cs, o.leaderElectionNamespace, o.leaderElectionID); err != nil {
		return err
	}
	lock := fence.lock(&resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: o.leaderElectionID, Namespace: o.leaderElectionNamespace},
		Client:     cs.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: id},
	})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var workErr error
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: lock, Name: o.leaderElectionID, ReleaseOnCancel: true,
		LeaseDuration: leaseDuration, RenewDeadline: renewDeadline, RetryPeriod: retryPeriod,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				state.on.Store(true)
				logger.Info("leader elected", "identity", id, "lease", o.leaderElectionNamespace+"/"+o.leaderElectionID)
				workCtx, stop := context.WithCancel(ctx)
				var lapsed atomic.Bool
				go fence.watch(workCtx, func(age time.Duration) {
					lapsed.Store(true)
					state.on.Store(false)
					logger.Error("leadership lapsed", "identity", id, "lastRenewal", age.Round(time.Millisecond).String(),
						"lease", leaseDuration.String())
					stop()
				})
				workErr = work(workCtx)
				stop()
				if lapsed.Load() {
					workErr = errLostLeadership
				}
				cancel()
			},
			OnStoppedLeading: func() {
				state.on.Store(false)
				if ctx.Err() == nil {
					logger.Error("leadership lost", "identity", id)
					workErr = errLostLeadership
				}
				cancel()
			},
			OnNewLeader: func(current string) {
				if current != id {
					logger.Info("standby", "leader", current)
				}
			},
		},
	})
	if err != nil {
		return err
	}
	elector.Run(ctx)
	return workErr
}

// checkLease makes a Lease that cannot be written a clear error at start,
// rather than a replica that never leads and never says why: a missing
// namespace, or RBAC that does not let this account read, create or
// update it (checked by a server-side dry-run). An API server that does not
// answer is not this error: the elector retries until it does.
func checkLease(ctx context.Context, cs kubernetes.Interface, namespace, name string) error {
	leases := cs.CoordinationV1().Leases(namespace)
	ref := "Lease " + namespace + "/" + name
	dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	lease, err := leases.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = leases.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}}, dryRun)
		if err != nil && !reconciler.Unreachable(err) {
			return fmt.Errorf("leader election: cannot create %s: %w", ref, err)
		}
	case err != nil:
		if reconciler.Unreachable(err) {
			return nil
		}
		return fmt.Errorf("leader election: cannot read %s: %w", ref, err)
	default:
		_, err = leases.Update(ctx, lease, metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil && !reconciler.Unreachable(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("leader election: cannot update %s: %w", ref, err)
		}
	}
	return nil
}
