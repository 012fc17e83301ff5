package ebscsi

import (
	"context"
	"log/slog"

	"github.com/go-logr/logr"
)

// libraryLevel is the highest level at which the records of the
// provisioning library, the informers and the event broadcasters reach the
// Options.Logger, unless they are errors: below DEBUG, so that a DEBUG
// handler shows the simulation's own records only.
const libraryLevel = slog.LevelDebug - 4

// libraryLogger turns l into the logr.Logger that the provisioning library,
// the informers and the event broadcasters find in their context, demoting
// their progress chatter (klog's Info and V levels) to libraryLevel and
// below.
func libraryLogger(l *slog.Logger, component string) logr.Logger {
	h := demoteHandler{next: l.Handler()}
	return logr.FromSlogHandler(h).WithValues("component", component)
}

// demoteHandler passes records on at libraryLevel or below, except errors,
// which keep their level. klog's V(n) arrives as level -n and keeps its
// order: V(5) ends up below V(4).
type demoteHandler struct {
	next slog.Handler
}

func demote(level slog.Level) slog.Level {
	if level >= slog.LevelError {
		return level
	}
	return min(level, slog.LevelDebug) - (slog.LevelDebug - libraryLevel)
}

func (h demoteHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, demote(level))
}

func (h demoteHandler) Handle(ctx context.Context, r slog.Record) error {
	r.Level = demote(r.Level)
	return h.next.Handle(ctx, r)
}

func (h demoteHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return demoteHandler{next: h.next.WithAttrs(attrs)}
}

func (h demoteHandler) WithGroup(name string) slog.Handler {
	return demoteHandler{next: h.next.WithGroup(name)}
}
