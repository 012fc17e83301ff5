package reconciler

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilnet "k8s.io/apimachinery/pkg/util/net"
)

// A sync's failure is classified by its cause, not by the stage it
// happened in (docs/design.md, "Faults"):
//
//   - unreachable: the API server could not be reached or did not answer
//     (connection refused or reset, EOF, a timeout), at any stage after
//     the fetch. Retried with the loop's backoff, and as soon as the API
//     server answers again (APIReachability).
//   - overloaded: the API server answered that it cannot serve now (429,
//     500 and 503 such as etcd unavailable, 504, a server timeout).
//     Retried with backoff.
//   - rejected: the API server refused the content (schema, admission,
//     RBAC, a field manager conflict). Permanent until the revision
//     changes: retried at the next interval or commit, not sooner.
//   - otherwise, the stage decides: a build or validation failure is the
//     commit's (permanent), a fetch, apply, prune or health failure is
//     retried with backoff.
type Cause string

const (
	CauseUnreachable Cause = "api-unreachable"
	CauseOverloaded  Cause = "api-overloaded"
	CauseRejected    Cause = "rejected"
	CauseSource      Cause = "source" // the fetch failed: git or the directory
	CauseContent     Cause = "content"
	CauseOther       Cause = "other"
)

// Classify returns the cause of a sync's failure at stage, and whether it
// is retried with backoff (transient) rather than at the next revision or
// interval.
func Classify(stage Stage, err error) (Cause, bool) {
	if stage == StageFetch {
		return CauseSource, true
	}
	var unreachable, overloaded, rejected bool
	walkLeaves(err, func(e error) {
		switch {
		case isUnreachable(e):
			unreachable = true
		case isOverloaded(e):
			overloaded = true
		case isRejected(e):
			rejected = true
		}
	})
	// Of a batch where some requests failed for the server and others for
	// their content, the server's failure decides: retrying soon finds the
	// content error again, and retrying late delays the rest.
	switch {
	case unreachable:
		return CauseUnreachable, true
	case overloaded:
		return CauseOverloaded, true
	case rejected:
		return CauseRejected, false
	case stage == StageBuild || stage == StageValidate:
		return CauseContent, false
	}
	return CauseOther, true
}

// walkLeaves calls f with every error err wraps that wraps nothing itself,
// through both Unwrap() error and Unwrap() []error (errors.Join of a
// batch's failures): the errors that say what happened, not the words
// around them, whose text may quote anything (an admission webhook's
// message about its own connection, say).
func walkLeaves(err error, f func(error)) {
	switch u := err.(type) {
	case nil:
	case interface{ Unwrap() error }:
		if inner := u.Unwrap(); inner != nil {
			walkLeaves(inner, f)
		} else {
			f(err)
		}
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			walkLeaves(e, f)
		}
	default:
		f(err)
	}
}

// Unreachable reports whether err says that the server could not be
// reached or did not answer (see Classify's api-unreachable).
func Unreachable(err error) bool { return anyLeaf(err, isUnreachable) }

// lostRetries are the delays between the attempts of a request whose
// connection was lost (retryLost): two seconds in all, so that one
// reset connection does not fail a sync of a thousand objects, and an
// outage still fails it within two seconds.
var lostRetries = []time.Duration{100 * time.Millisecond, 300 * time.Millisecond, 600 * time.Millisecond, time.Second}

// retryLost runs an idempotent request (a server-side apply, its dry-run,
// a GET, a preconditioned DELETE) again when its connection was lost
// before an answer (Unreachable: reset, EOF, refused), up to
// len(lostRetries) times. An answer of the server, whatever it says, is
// returned as it is.
func retryLost[T any](ctx context.Context, request func() (T, error)) (T, error) {
	v, err := request()
	for _, d := range lostRetries {
		if err == nil || !Unreachable(err) || ctx.Err() != nil {
			break
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return v, err
		case <-t.C:
		}
		v, err = request()
	}
	return v, err
}

// anyLeaf reports whether f holds for one of err's leaves (walkLeaves).
func anyLeaf(err error, f func(error) bool) bool {
	found := false
	walkLeaves(err, func(e error) { found = found || f(e) })
	return found
}

// isUnreachable reports whether the leaf error e says that a connection to
// the server failed or broke: refused, reset, closed early, timed out, a
// name that does not resolve. A context that ended is its caller's doing.
func isUnreachable(e error) bool {
	if _, ok := e.(*apierrors.StatusError); ok {
		return false // an answer, whatever it says
	}
	if errors.Is(e, context.DeadlineExceeded) || errors.Is(e, context.Canceled) {
		return false
	}
	if utilnet.IsConnectionRefused(e) || utilnet.IsConnectionReset(e) || utilnet.IsProbableEOF(e) ||
		errors.Is(e, syscall.EHOSTUNREACH) || errors.Is(e, syscall.ENETUNREACH) || errors.Is(e, syscall.EPIPE) ||
		errors.Is(e, syscall.ECONNABORTED) || errors.Is(e, syscall.ETIMEDOUT) {
		return true
	}
	var ne net.Error
	if errors.As(e, &ne) && ne.Timeout() {
		return true
	}
	var dns *net.DNSError
	return errors.As(e, &dns)
}

// isOverloaded reports whether e is the API server's answer that it cannot
// serve the request now.
func isOverloaded(e error) bool {
	se, ok := e.(*apierrors.StatusError)
	if !ok {
		return false
	}
	if typedPatchFailed(se) {
		return false
	}
	return apierrors.IsTooManyRequests(se) || apierrors.IsServiceUnavailable(se) ||
		apierrors.IsServerTimeout(se) || apierrors.IsTimeout(se) || apierrors.IsInternalError(se) ||
		apierrors.IsUnexpectedServerError(se) || se.Status().Code == http.StatusBadGateway
}

// isRejected reports whether e is the API server's refusal of the request's
// content or of the caller's right to make it. A server-side apply of a
// field the schema does not know is a 500 from the API server ("failed to
// create typed patch object ...: field not declared in schema"): the
// content's fault, told apart by its message.
func isRejected(e error) bool {
	se, ok := e.(*apierrors.StatusError)
	if !ok {
		return false
	}
	return typedPatchFailed(se) || apierrors.IsInvalid(se) || apierrors.IsBadRequest(se) || apierrors.IsForbidden(se) ||
		apierrors.IsUnauthorized(se) || apierrors.IsConflict(se) || apierrors.IsRequestEntityTooLargeError(se) ||
		apierrors.IsNotAcceptable(se) || apierrors.IsUnsupportedMediaType(se) || apierrors.IsMethodNotSupported(se)
}

// typedPatchFailed reports whether se is the API server's 500 for a
// server-side apply that does not fit the object's schema.
func typedPatchFailed(se *apierrors.StatusError) bool {
	return apierrors.IsInternalError(se) && strings.Contains(se.Status().Message, "failed to create typed patch object")
}

// APIReachability follows whether the API server answers, from every
// request the process makes through its transport (WrapTransport): client
// requests, watches, Events and the Lease. A request that fails to connect
// starts a probe of /readyz; if two probes in a row fail too, the server
// is unreachable, which is logged once ("API server unreachable", WARN),
// until a request or the probe (every ProbeInterval) succeeds ("API server
// reachable", INFO, with how long it was not). Loops wait for that moment
// to retry (Wait), so a sync converges within a probe interval of the
// server's return instead of at the next backoff step.
type APIReachability struct {
	logger   *slog.Logger
	probe    func(context.Context) error
	interval time.Duration
	onChange func(reachable bool)

	down    atomic.Bool // fast path of ok()
	suspect atomic.Bool // a probe runs: a request failed to connect

	mu      sync.Mutex
	probing bool
	since   time.Time     // when the failure that started the probe happened
	back    chan struct{} // closed when the probe ends: the server answers
}

// APIReachabilityOptions tune an APIReachability.
type APIReachabilityOptions struct {
	// Probe asks the API server whether it is there (GET /readyz). Its
	// requests may go through the wrapped transport.
	Probe func(context.Context) error
	// ProbeInterval is the time between probes while the server does not
	// answer. Default 1s.
	ProbeInterval time.Duration
	// Logger receives the two records. Default: discard.
	Logger *slog.Logger
	// OnChange, when set, is called at each change (a metric).
	OnChange func(reachable bool)
}

// NewAPIReachability returns a tracker that starts reachable.
func NewAPIReachability(opts APIReachabilityOptions) *APIReachability {
	if opts.ProbeInterval <= 0 {
		opts.ProbeInterval = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &APIReachability{logger: opts.Logger, probe: opts.Probe, interval: opts.ProbeInterval, onChange: opts.OnChange}
}

// Unreachable reports whether the API server is known not to answer, and
// since when.
func (a *APIReachability) Unreachable() (bool, time.Time) {
	if a == nil || !a.down.Load() {
		return false, time.Time{}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.down.Load(), a.since
}

// Down reports whether the API server is known not to answer.
func (a *APIReachability) Down() bool { return a != nil && a.down.Load() }

// Suspect reports whether a request failed to reach the API server and the
// probe has not yet seen it answer (Down, or about to be).
func (a *APIReachability) Suspect() bool { return a != nil && a.suspect.Load() }

// Wait returns a channel that is closed when the API server answers again,
// if it is being probed now (a request failed to connect); else nil, which
// never fires in a select: the caller's backoff alone decides.
func (a *APIReachability) Wait() <-chan struct{} {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.probing {
		return nil
	}
	return a.back
}

// Failed records a request that could not reach the server: it starts the
// probe unless one runs.
func (a *APIReachability) Failed(err error) {
	if a == nil || a.probe == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.probing {
		return
	}
	a.probing, a.since, a.back = true, time.Now(), make(chan struct{})
	a.suspect.Store(true)
	go a.run(err)
}

// ok records an answer from the server (any status but a gateway's or
// overload's 5xx): the end of an outage, if there was one.
func (a *APIReachability) ok() {
	if !a.down.Load() {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.endLocked()
}

// run probes until the server answers. Two failed probes in a row make
// an outage; a failure the first or second probe answers was lost
// connections (a lossy path), which is not logged.
func (a *APIReachability) run(cause error) {
	for failed := 0; ; {
		ctx, cancel := context.WithTimeout(context.Background(), max(a.interval, 2*time.Second))
		err := a.probe(ctx)
		cancel()
		a.mu.Lock()
		if err == nil || !a.probing {
			a.endLocked()
			a.mu.Unlock()
			return
		}
		if failed++; failed == 2 {
			a.down.Store(true)
			a.logger.Warn("API server unreachable", "error", cause.Error())
			if a.onChange != nil {
				a.onChange(false)
			}
		}
		a.mu.Unlock()
		time.Sleep(a.interval)
	}
}

// endLocked ends a probe and an outage; a.mu is held.
func (a *APIReachability) endLocked() {
	if !a.probing {
		return
	}
	if a.down.Load() {
		a.down.Store(false)
		a.logger.Info("API server reachable", "after", time.Since(a.since).Round(time.Millisecond).String())
		if a.onChange != nil {
			a.onChange(true)
		}
	}
	a.probing = false
	a.suspect.Store(false)
	close(a.back)
}

// WrapTransport returns rt reporting each request's outcome to a; for
// rest.Config.Wrap.
func (a *APIReachability) WrapTransport(rt http.RoundTripper) http.RoundTripper {
	return &reachTransport{a: a, base: rt}
}

type reachTransport struct {
	a    *APIReachability
	base http.RoundTripper
}

func (t *reachTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	switch {
	case err != nil:
		// A request its caller gave up on says nothing of the server.
		if req.Context().Err() == nil && anyLeaf(err, isUnreachable) {
			t.a.Failed(err)
		}
	case resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusBadGateway ||
		resp.StatusCode == http.StatusGatewayTimeout:
		// A proxy in front of a server that is not there, or a server
		// not ready: neither an outage's end nor its start.
	default:
		t.a.ok()
	}
	return resp, err
}

// WrappedTransport is the unwrapped transport, for client-go's
// utilnet.RoundTripperWrapper.
func (t *reachTransport) WrappedRoundTripper() http.RoundTripper { return t.base }
