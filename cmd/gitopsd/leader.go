package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
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
// namespace; without election it runs work at once.
func runLeader(ctx context.Context, o *options, cs kubernetes.Interface, state *leading, logger *slog.Logger, work func(context.Context) error) error {
	if !o.leaderElect {
		state.on.Store(true)
		return work(ctx)
	}
	host, _ := os.Hostname()
	id := fmt.Sprintf("%s_%s", host, uuid.NewUUID())
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: o.leaderElectionID, Namespace: o.leaderElectionNamespace},
		Client:     cs.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: id},
	}
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
				workErr = work(ctx)
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
