//go:build unix

package git

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLockCacheWaitsAndHonoursContext(t *testing.T) {
	dir := t.TempDir()
	unlock, err := lockCache(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if _, err := lockCache(ctx, dir); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock while held = %v, want context.DeadlineExceeded", err)
	}
	unlock()
	unlock2, err := lockCache(t.Context(), dir)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	unlock2()
}

func TestFetchSharedCacheConcurrently(t *testing.T) {
	f := newFixture(t, Options{})
	other, err := New(Options{URL: f.srv.RepoURL("repo.git"), CacheDir: f.src.cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	var snaps [4]Snapshot
	var errs [4]error
	var wg sync.WaitGroup
	for i := range snaps {
		src := f.src
		if i%2 == 1 {
			src = other
		}
		wg.Go(func() { snaps[i], errs[i] = src.Fetch(t.Context()) })
	}
	wg.Wait()
	for i := range snaps {
		if errs[i] != nil {
			t.Fatalf("Fetch %d: %v", i, errs[i])
		}
		if diff := cmp.Diff(snaps[0], snaps[i]); diff != "" {
			t.Errorf("Fetch %d snapshot (-want +got):\n%s", i, diff)
		}
	}
	if diff := cmp.Diff(map[string]string{"app.yaml": "file v: 1\n"}, readTree(t, snaps[0].Dir)); diff != "" {
		t.Errorf("snapshot files (-want +got):\n%s", diff)
	}
}
