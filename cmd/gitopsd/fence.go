package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// leaseMargin is taken off the lease duration for the time a leader may
// write after its last renewal: the standbys count the lease from when
// they see a renewal, which is after the leader sent it, so a leader that
// stops writing leaseDuration - leaseMargin after it sent its last
// successful renewal has stopped before any standby can take over, even
// with a request in flight for up to leaseMargin.
const leaseMargin = 2 * time.Second

// errNotLeader is the error of a write refused by the fence.
var errNotLeader = errors.New("not written: this replica cannot prove it holds the Lease")

// fence lets writes to the API server through only while this replica can
// prove, by its own monotonic clock, that its last successful renewal of
// the Lease is younger than leaseDuration - leaseMargin (docs/design.md,
// "Faults"). A replica that was paused (SIGSTOP, a frozen VM, a long GC)
// past its lease wakes up with every write refused, before its syncs have
// even seen that it lost the Lease. Without leader election the fence is
// open.
type fence struct {
	elect   bool
	renewed atomic.Pointer[time.Time] // when the last successful renewal was sent
}

// valid reports whether this replica may write now, and how old its last
// renewal is.
func (f *fence) valid() (bool, time.Duration) {
	if f == nil || !f.elect {
		return true, 0
	}
	last := f.renewed.Load()
	if last == nil {
		return false, 0
	}
	age := time.Since(*last) // monotonic: a wall-clock step does not count
	return age < leaseDuration-leaseMargin, age
}

// lock wraps the Lease lock so that each successful create or renewal of
// the Lease by this replica moves the fence.
func (f *fence) lock(l resourcelock.Interface) resourcelock.Interface {
	return &fencedLock{Interface: l, f: f}
}

type fencedLock struct {
	resourcelock.Interface
	f *fence
}

func (l *fencedLock) Create(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	sent := time.Now()
	err := l.Interface.Create(ctx, ler)
	l.record(ler, sent, err)
	return err
}

func (l *fencedLock) Update(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	sent := time.Now()
	err := l.Interface.Update(ctx, ler)
	l.record(ler, sent, err)
	return err
}

func (l *fencedLock) record(ler resourcelock.LeaderElectionRecord, sent time.Time, err error) {
	if err == nil && ler.HolderIdentity == l.Identity() {
		l.f.renewed.Store(&sent)
	}
}

// watch calls lapsed once the fence closes while ctx lasts: the leader's
// work stops the moment its proof of the Lease runs out, not when the
// elector next fails to renew.
func (f *fence) watch(ctx context.Context, lapsed func(age time.Duration)) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if ok, age := f.valid(); !ok {
				lapsed(age)
				return
			}
		}
	}
}

// wrapTransport refuses every write request (any method but GET, HEAD and
// OPTIONS: applies, dry-runs, deletes, patches, Events) while the fence is
// closed; requests about Leases (the elector's own) always pass.
func (f *fence) wrapTransport(rt http.RoundTripper) http.RoundTripper {
	return &fencedTransport{f: f, base: rt}
}

type fencedTransport struct {
	f    *fence
	base http.RoundTripper
}

func (t *fencedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		if !strings.Contains(req.URL.Path, "/apis/coordination.k8s.io/") {
			if ok, age := t.f.valid(); !ok {
				if req.Body != nil {
					req.Body.Close()
				}
				return nil, fmt.Errorf("%w (last renewal %s ago, lease %s)", errNotLeader, age.Round(time.Millisecond), leaseDuration)
			}
		}
	}
	return t.base.RoundTrip(req)
}

func (t *fencedTransport) WrappedRoundTripper() http.RoundTripper { return t.base }
