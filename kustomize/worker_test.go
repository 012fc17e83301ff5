package kustomize

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// takeSpare returns the spare worker and empties the slot, for a test to
// look at; the test kills it.
func takeSpare() (*worker, workerKey) {
	spare.Lock()
	defer spare.Unlock()
	w, key := spare.w, spare.key
	spare.w = nil
	return w, key
}

// dropSpare kills the spare worker, if any, and waits for it to end.
func dropSpare(t *testing.T) {
	t.Helper()
	if w, _ := takeSpare(); w != nil {
		w.kill()
		w.close()
		<-w.exited
	}
}

// spareOf returns the spare worker's process ID, or 0.
func spareOf() (int, workerKey) {
	spare.Lock()
	defer spare.Unlock()
	if spare.w == nil {
		return 0, workerKey{}
	}
	return spare.w.pid, spare.key
}

func TestSpareWorker(t *testing.T) {
	dropSpare(t)
	t.Cleanup(func() { dropSpare(t) })
	want, err := NewBuilder(Options{InProcess: true}).Build(context.Background(), "testdata", "app/overlays/dev")
	if err != nil {
		t.Fatal(err)
	}
	b := NewBuilder(Options{SpareWorker: true})
	build := func(t *testing.T) {
		t.Helper()
		got, err := b.Build(context.Background(), "testdata", "app/overlays/dev")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(string(want.YAML), string(got.YAML)); diff != "" {
			t.Fatalf("a spare worker's build differs from an in-process one (-want +got):\n%s", diff)
		}
	}

	// Without SpareWorker, nothing is left running.
	if _, err := NewBuilder(Options{}).Build(context.Background(), "testdata", "app/overlays/dev"); err != nil {
		t.Fatal(err)
	}
	if pid, _ := spareOf(); pid != 0 {
		t.Fatalf("a build without SpareWorker left worker %d", pid)
	}

	t.Run("used by the next build", func(t *testing.T) {
		build(t)
		first, key := spareOf()
		if first == 0 || key.remote {
			t.Fatalf("after a build: spare %d for %+v, want one without remote bases", first, key)
		}
		build(t)
		second, _ := spareOf()
		if second == 0 || second == first {
			t.Fatalf("spare after the second build: %d, want a new one (the first, %d, built)", second, first)
		}
		// The first spare built and ended: it is not a process any more.
		if err := syscall.Kill(first, 0); !errors.Is(err, syscall.ESRCH) {
			t.Fatalf("worker %d that built is still there (kill 0: %v)", first, err)
		}
	})

	t.Run("dead spare replaced", func(t *testing.T) {
		build(t)
		w, key := takeSpare()
		if w == nil {
			t.Fatal("no spare after a build")
		}
		w.kill()
		<-w.exited
		spare.Lock()
		spare.w, spare.key = w, key
		spare.Unlock()
		build(t)
	})

	t.Run("died at its request", func(t *testing.T) {
		// Killed after it was taken, as the OOM killer might: the build
		// fails and says the worker failed; the next build works.
		build(t)
		pid, _ := spareOf()
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			_, err := b.Build(ctx, "testdata", "app/overlays/dev")
			errc <- err
		}()
		// Stopped, it cannot answer; SIGKILL ends it where it waits.
		deadline := time.Now().Add(5 * time.Second)
		for !spareTaken(pid) && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		syscall.Kill(pid, syscall.SIGKILL)
		defer cancel()
		if err := <-errc; err == nil {
			t.Fatal("a build whose worker was killed succeeded")
		}
		build(t)
	})

	t.Run("another kind of build replaces it", func(t *testing.T) {
		build(t)
		old, _ := spareOf()
		if _, err := NewBuilder(Options{SpareWorker: true, AllowRemoteBases: true}).Build(context.Background(), "testdata", "app/overlays/dev"); err != nil {
			t.Fatal(err)
		}
		pid, key := spareOf()
		if pid == 0 || pid == old || !key.remote {
			t.Fatalf("spare %d for %+v after a build with remote bases, want a new one for remote bases", pid, key)
		}
		if err := syscall.Kill(old, 0); !errors.Is(err, syscall.ESRCH) {
			t.Fatalf("the spare without remote bases, %d, is still there (kill 0: %v)", old, err)
		}
	})

}

// spareTaken reports whether the worker pid is no longer the spare (a
// build has taken it).
func spareTaken(pid int) bool {
	p, _ := spareOf()
	return p != pid
}
