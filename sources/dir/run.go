package dir

import (
	"context"
	"fmt"
	"time"

	"github.com/fsnotify/fsnotify"
)

// maxWaitFactor bounds how long a tree that never settles holds back its
// signal, in Debounce periods.
const maxWaitFactor = 10

// Run watches the tree and signals Changed until ctx is done. It sends one
// signal once the watch is in place, then one per burst of changes, after
// the tree has been quiet for Debounce. When Path is swapped for a symlink
// to another directory, Run watches the new tree from then on. When the
// watcher reports an error, such as a queue overflow, Run watches the tree
// afresh and signals, so that the reconciler resyncs fully.
//
// Run returns nil when ctx is done, and an error when the watch cannot be
// set up. Call it once, typically in its own goroutine.
func (s *Source) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return fmt.Errorf("%s: watch: already running", s.path)
	}
	defer s.running.Store(false)

	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("%s: watch: %w", s.path, err)
	}
	defer fsw.Close()
	w := newWatchSet(fsw, s.abs)
	if err := w.start(); err != nil {
		return fmt.Errorf("%s: watch: %w", s.path, err)
	}
	s.notify()
	return s.loop(ctx, w, fsw.Events, fsw.Errors)
}

// loop turns watcher events into debounced signals.
func (s *Source) loop(ctx context.Context, w *watchSet, events <-chan fsnotify.Event, errs <-chan error) error {
	d := debouncer{quiet: s.debounce, max: maxWaitFactor * s.debounce}
	defer d.stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				return fmt.Errorf("%s: watch: watcher closed", s.path)
			}
			if w.handle(ev) {
				d.arm(time.Now())
			}
		case _, ok := <-errs:
			if !ok {
				return fmt.Errorf("%s: watch: watcher closed", s.path)
			}
			// Events may have been lost, new directories among them.
			_ = w.resync()
			d.arm(time.Now())
		case <-d.C():
			d.fired()
			s.notify()
		}
	}
}

// debouncer fires once a burst of events has been quiet for quiet, or max
// after the burst began, whichever is first.
type debouncer struct {
	quiet, max time.Duration
	timer      *time.Timer
	first      time.Time // start of the pending burst; zero when none is pending
}

// arm records an event at now.
func (d *debouncer) arm(now time.Time) {
	if d.first.IsZero() {
		d.first = now
	}
	wait := min(d.quiet, d.first.Add(d.max).Sub(now))
	if d.timer == nil {
		d.timer = time.NewTimer(wait)
		return
	}
	d.timer.Reset(wait) // since Go 1.23, Reset discards a stale tick
}

// C returns the channel that fires for the pending burst, or nil, which
// blocks forever, when none is pending.
func (d *debouncer) C() <-chan time.Time {
	if d.first.IsZero() {
		return nil
	}
	return d.timer.C
}

// fired ends the pending burst.
func (d *debouncer) fired() { d.first = time.Time{} }

func (d *debouncer) stop() {
	if d.timer != nil {
		d.timer.Stop()
	}
}
