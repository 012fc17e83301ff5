package dir

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

// TestLoopSignalsOnWatcherError checks the fallback that stands in for
// lost events: an error from the watcher, such as a queue overflow, which
// a test cannot cause on demand.
func TestLoopSignalsOnWatcherError(t *testing.T) {
	src, err := New(Options{Path: t.TempDir(), Debounce: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	defer fsw.Close()
	w := newWatchSet(fsw, src.abs)
	if err := w.start(); err != nil {
		t.Fatal(err)
	}
	// Made where the loop, fed no events, cannot see it.
	lost := filepath.Join(src.abs, "lost")
	if err := os.Mkdir(lost, 0o755); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 1)
	errs <- fsnotify.ErrEventOverflow

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- src.loop(ctx, w, make(chan fsnotify.Event), errs) }()

	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	select {
	case <-src.Changed():
	case <-timer.C:
		t.Fatal("no signal after a watcher error")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("loop = %v after cancel, want nil", err)
	}
	if _, ok := w.dirs[lost]; !ok {
		t.Errorf("%s not watched after the error; watched: %v", lost, w.dirs)
	}
}
