package reconciler

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// LoopOptions tunes the Loop. The zero value works.
type LoopOptions struct {
	// Interval is the poll and full-resync period. Default 1m.
	Interval time.Duration
	// Path is the overlay path, logged with every sync.
	Path string
	// Logger receives `sync complete` and `sync failed`. Default: discard.
	Logger *slog.Logger
	// Changed, when set, wakes the loop as soon as the source changes (a
	// watched directory); a git source is polled every Interval instead.
	Changed <-chan struct{}
	// MinBackoff is the first retry delay after a transient failure; it
	// doubles, with jitter, up to Interval. Default 1s.
	MinBackoff time.Duration
	// Metrics, when set, records every sync under Name.
	Metrics *Metrics
	Name    string
	// OnSync, when set, is called after every sync that ran (not skipped).
	OnSync func(SyncResult, error)
	// API, when set, tells a sync that failed because the API server did
	// not answer when it answers again: the retry runs then, not at the
	// next backoff step.
	API *APIReachability
	// HealGrace is how long a sync's fetch may run before a heal request
	// (Heal) is served from the last good revision instead of waiting for
	// it: a hung git server must not hold drift healing. Default 1s.
	HealGrace time.Duration
}

// Loop runs syncs: at start, every Interval, on every trigger (a source
// change, SIGHUP, a webhook), and sooner after a transient failure. Triggers
// that arrive during a sync coalesce into one more sync.
type Loop struct {
	syncer  *Syncer
	opts    LoopOptions
	trigger chan struct{}
	heal    chan struct{}

	busySince atomic.Pointer[time.Time] // when the sync in flight began; nil between syncs

	mu          sync.Mutex
	lastApplied string
	lastResult  SyncResult
	lastErr     error
	lastTime    time.Time
}

// Status is what the loop last did, for /status and /readyz.
type Status struct {
	// LastApplied is the revision of the last successful sync.
	LastApplied string
	// Last is the last sync's result and error (nil when it succeeded);
	// At is when it ended, zero before the first.
	Last SyncResult
	Err  error
	At   time.Time
}

// Status returns what the loop last did.
func (l *Loop) Status() Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Status{LastApplied: l.lastApplied, Last: l.lastResult, Err: l.lastErr, At: l.lastTime}
}

// NewLoop returns a Loop around a Syncer.
func NewLoop(s *Syncer, opts LoopOptions) *Loop {
	if opts.Interval <= 0 {
		opts.Interval = time.Minute
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = time.Second
	}
	if opts.HealGrace <= 0 {
		opts.HealGrace = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Loop{syncer: s, opts: opts, trigger: make(chan struct{}, 1), heal: make(chan struct{}, 1)}
}

// Trigger asks for a sync as soon as possible. It never blocks and may be
// called from any goroutine.
func (l *Loop) Trigger() {
	select {
	case l.trigger <- struct{}{}:
	default:
	}
}

// Heal asks for drift to be healed as soon as possible: a sync, like
// Trigger, and, when that sync's fetch does not answer within HealGrace
// (git is down or hung), the last good revision applied meanwhile. It
// never blocks.
func (l *Loop) Heal() {
	select {
	case l.heal <- struct{}{}:
	default:
	}
	l.Trigger()
}

// Triggered reports whether a trigger is pending, and takes it: Run will
// not see it. For tests of what triggers a loop.
func (l *Loop) Triggered() bool {
	select {
	case <-l.trigger:
		return true
	default:
		return false
	}
}

// Busy returns how long the sync in flight has run, 0 between syncs: for a
// liveness check, since a loop wedged inside a sync (a fetch or a request
// that never returns) makes no other sign.
func (l *Loop) Busy() time.Duration {
	if began := l.busySince.Load(); began != nil {
		return time.Since(*began)
	}
	return 0
}

// LastApplied is the revision of the last successful sync.
func (l *Loop) LastApplied() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastApplied
}

// Run syncs until ctx ends; a sync in flight at that moment is abandoned
// through its context (the API server finishes or drops each request whole).
//
// A failure is retried by its cause (Classify): with backoff (doubling
// from MinBackoff, with jitter, up to Interval) when it is transient, and
// at once when the API server it could not reach answers again; at the next
// interval or trigger when the content was refused. The same failure is
// logged once (an outage of the API server is one failure, whatever each
// request's error says), then at DEBUG until something changes.
func (l *Loop) Run(ctx context.Context) error {
	backoff := time.Duration(0)
	var lastFailure string
	for {
		began := time.Now()
		l.busySince.Store(&began)
		res, err := l.sync(ctx)
		l.busySince.Store(nil)
		if ctx.Err() != nil {
			return nil // shutdown, not a failure
		}
		l.record(res, err)
		wait := l.opts.Interval
		var back <-chan struct{}
		if err != nil {
			se := &SyncError{Stage: StageApply, Err: err}
			errors.As(err, &se)
			cause, transient := Classify(se.Stage, se.Err)
			key := failureKey(se.Stage, se.Revision, err)
			if cause == CauseUnreachable {
				key = string(cause) + se.Revision
			}
			level := slog.LevelError
			if key == lastFailure {
				level = slog.LevelDebug
			}
			lastFailure = key
			retry := "next interval or revision"
			if transient {
				backoff = min(max(2*backoff, l.opts.MinBackoff), l.opts.Interval)
				wait = backoff/2 + rand.N(backoff/2+1) // jitter: half to the full backoff
				retry = wait.Round(time.Millisecond).String()
			}
			if cause == CauseUnreachable {
				back = l.opts.API.Wait()
				if back != nil {
					retry = "when the API server answers, at most " + retry
				}
			}
			LogSync(ctx, l.opts.Logger, level, l.opts.Path, res, err, "cause", string(cause), "retry", retry)
			l.logLastGood(ctx, level, res, "sync failed")
		} else {
			backoff, lastFailure = 0, ""
			level := slog.LevelInfo
			if res.Skipped {
				level = slog.LevelDebug // a resync with self-heal off
			}
			LogSync(ctx, l.opts.Logger, level, l.opts.Path, res, nil)
		}
		if err == nil && res.SupersededBy != "" {
			l.opts.Logger.Info("health wait superseded", "revision", res.Revision, "path", l.opts.Path, "newRevision", res.SupersededBy)
			continue // the newer revision, at once
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		case <-l.trigger:
		case <-l.opts.Changed:
		case <-back:
		}
		timer.Stop()
	}
}

// failureKey identifies a failure for logging it once: its stage, revision
// and message, the message's parts in any order (a batch's errors are
// joined in the order its concurrent requests ended).
func failureKey(stage Stage, revision string, err error) string {
	parts := strings.FieldsFunc(err.Error(), func(r rune) bool { return r == '\n' || r == ';' })
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	slices.Sort(parts)
	return string(stage) + "\x00" + revision + "\x00" + strings.Join(parts, "\x00")
}

// sync runs one sync of the Syncer. Its fetch runs aside: a heal request
// that finds it still running after HealGrace is served from the last
// good revision (Syncer.applyLastGood) without waiting for git, which may
// not answer before its timeout. Heal requests made before the fetch ends
// are then dropped: the sync that follows applies, and so heals, too.
func (l *Loop) sync(ctx context.Context) (SyncResult, error) {
	start := time.Now()
	type fetched struct {
		snap Snapshot
		err  error
	}
	done := make(chan fetched, 1)
	go func() {
		snap, err := l.syncer.source.Fetch(ctx)
		done <- fetched{snap, err}
	}()
	grace := time.NewTimer(l.opts.HealGrace)
	defer grace.Stop()
	var heal <-chan struct{}
	for {
		select {
		case f := <-done:
			select {
			case <-l.heal:
			default:
			}
			return l.syncer.syncFetched(ctx, f.snap, f.err, start)
		case <-grace.C:
			heal = l.heal
		case <-heal:
			var res SyncResult
			l.syncer.applyLastGood(ctx, &res)
			l.logLastGood(ctx, slog.LevelError, res, "fetch running")
		}
	}
}

// logLastGood reports what a failed sync applied of the last good
// revision (see Syncer.applyLastGood): a record when it changed something
// (it healed drift), or when it failed, at the failure's level.
// reason says why: "sync failed", or "fetch running" for a heal served while
// a fetch does not answer.
func (l *Loop) logLastGood(ctx context.Context, level slog.Level, res SyncResult, reason string) {
	switch {
	case res.LastGood == "":
	case res.LastGoodErr != nil:
		l.opts.Logger.Log(ctx, level, MsgLastGoodFailed, "revision", res.LastGood, "path", l.opts.Path,
			"reason", reason, "error", res.LastGoodErr.Error())
	case res.Count(Created)+res.Count(Configured) > 0:
		l.opts.Logger.Info(MsgLastGoodApplied, "revision", res.LastGood, "path", l.opts.Path, "reason", reason,
			"created", res.Count(Created), "configured", res.Count(Configured), "unchanged", res.Count(Unchanged))
	}
}

// Records of a failed sync that applied the last good revision instead.
const (
	MsgLastGoodApplied = "last good revision applied"
	MsgLastGoodFailed  = "last good revision not applied"
)

func (l *Loop) record(res SyncResult, err error) {
	now := time.Now()
	l.opts.Metrics.ObserveSync(l.opts.Name, res, err, now)
	if res.Skipped {
		return
	}
	if l.opts.OnSync != nil {
		l.opts.OnSync(res, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lastResult, l.lastErr, l.lastTime = res, err, now
	if err == nil {
		l.lastApplied = res.Revision
	}
}

// LogSync writes the record of one sync as DESIGN.md fixes it: `sync
// complete` with the counts, or `sync failed` with the stage, at level.
// failed are more keys and values of a `sync failed` record.
func LogSync(ctx context.Context, logger *slog.Logger, level slog.Level, path string, res SyncResult, err error, failed ...any) {
	if logger.Enabled(ctx, slog.LevelDebug) && !res.Skipped {
		attrs := []any{"revision", res.Revision, "fetch", res.FetchDuration.Round(time.Millisecond).String()}
		for _, st := range res.Stages {
			attrs = append(attrs, string(st.Stage), st.Duration.Round(time.Millisecond).String())
		}
		logger.Debug("sync stages", attrs...)
	}
	if err != nil {
		se := &SyncError{Err: err}
		errors.As(err, &se)
		logger.Log(ctx, level, "sync failed", append([]any{"revision", se.Revision, "path", path,
			"stage", string(se.Stage), "error", se.Err.Error()}, failed...)...)
		return
	}
	logger.Log(ctx, level, "sync complete", "revision", res.Revision, "path", path,
		"created", res.Count(Created), "configured", res.Count(Configured),
		"unchanged", res.Count(Unchanged), "pruned", res.Count(Pruned),
		"duration", res.Duration.Round(time.Millisecond).String())
	for _, k := range res.Kept {
		logger.Debug("prune skipped", "object", k.Ref.String(), "reason", k.Reason)
	}
}
