package dir_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/sources/dir"
)

// signalTimeout bounds every wait for a signal; generous for -race on a
// loaded machine.
const signalTimeout = 10 * time.Second

// writeTree creates entries under root. A name ending in "/" is a
// directory; a content starting with "->" makes a symlink to the rest.
func writeTree(t testing.TB, root string, entries map[string]string) {
	t.Helper()
	for name, content := range entries {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case strings.HasSuffix(name, "/"):
			err = os.MkdirAll(p, 0o755)
		case strings.HasPrefix(content, "->"):
			err = os.Symlink(strings.TrimPrefix(content, "->"), p)
		default:
			err = os.WriteFile(p, []byte(content), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// resolved returns p with symlinks resolved, as Snapshot.Dir reports it.
func resolved(t *testing.T, p string) string {
	t.Helper()
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func newSource(t testing.TB, opts dir.Options) *dir.Source {
	t.Helper()
	src, err := dir.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return src
}

func fetch(t *testing.T, src *dir.Source) dir.Snapshot {
	t.Helper()
	snap, err := src.Fetch(t.Context())
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	return snap
}

// start runs src until the test ends, and waits for the signal that says
// its watch is in place.
func start(t *testing.T, src *dir.Source) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitSignal(t, src, "Run started")
}

// waitSignal fails the test unless src signals within signalTimeout.
func waitSignal(t *testing.T, src *dir.Source, after string) {
	t.Helper()
	timer := time.NewTimer(signalTimeout)
	defer timer.Stop()
	select {
	case <-src.Changed():
	case <-timer.C:
		t.Fatalf("no signal within %v after %s", signalTimeout, after)
	}
}

// noSignal fails the test if src signals within window.
func noSignal(t *testing.T, src *dir.Source, window time.Duration, after string) {
	t.Helper()
	timer := time.NewTimer(window)
	defer timer.Stop()
	select {
	case <-src.Changed():
		t.Fatalf("unexpected signal within %v after %s", window, after)
	case <-timer.C:
	}
}

// drain consumes signals until none comes for window, so that the next
// signal belongs to the next change.
func drain(t *testing.T, src *dir.Source, window time.Duration) {
	t.Helper()
	deadline := time.Now().Add(signalTimeout)
	for time.Now().Before(deadline) {
		timer := time.NewTimer(window)
		select {
		case <-src.Changed():
			timer.Stop()
		case <-timer.C:
			return
		}
	}
	t.Fatalf("signals did not stop within %v", signalTimeout)
}

// containsPath reports whether err names path first, as errors here do.
func containsPath(err error, path string) bool {
	return strings.HasPrefix(err.Error(), path+": ")
}
