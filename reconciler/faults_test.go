package reconciler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func TestClassify(t *testing.T) {
	refused := &url.Error{Op: "Patch", URL: "https://10.0.0.1:6443/api/v1/namespaces/a/configmaps/b",
		Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}
	reset := &url.Error{Op: "Get", URL: "https://10.0.0.1:6443/api", Err: &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}}
	cm := schema.GroupResource{Resource: "configmaps"}
	invalid := apierrors.NewInvalid(schema.GroupKind{Kind: "ConfigMap"}, "b", field.ErrorList{field.Invalid(field.NewPath("data"), "x", "bad")})
	webhook := apierrors.NewInternalError(errors.New(`failed calling webhook "v.example.com": dial tcp 10.0.0.9:443: connect: connection refused`))
	for _, tc := range []struct {
		name      string
		stage     Stage
		err       error
		cause     Cause
		transient bool
	}{
		{"fetch", StageFetch, errors.New("git ls-remote: 401"), CauseSource, true},
		{"build", StageBuild, errors.New("overlays/dev: kustomize build: bad"), CauseContent, false},
		{"validate, refused", StageValidate, fmt.Errorf("read inventory: %w", refused), CauseUnreachable, true},
		{"validate, reset", StageValidate, fmt.Errorf("dry-run ConfigMap/a/b: %w", reset), CauseUnreachable, true},
		{"validate, EOF", StageValidate, fmt.Errorf("dry-run: %w", &url.Error{Op: "Patch", URL: "u", Err: io.EOF}), CauseUnreachable, true},
		{"validate, timeout", StageValidate, &url.Error{Op: "Get", URL: "u", Err: &net.OpError{Op: "dial", Err: timeoutErr{}}}, CauseUnreachable, true},
		{"validate, invalid", StageValidate, fmt.Errorf("dry-run ConfigMap/a/b: %w", invalid), CauseRejected, false},
		{"validate, empty build", StageValidate, ErrEmptyBuild, CauseContent, false},
		{"apply, invalid", StageApply, invalid, CauseRejected, false},
		{"apply, forbidden", StageApply, apierrors.NewForbidden(cm, "b", errors.New("no")), CauseRejected, false},
		{"apply, conflict", StageApply, apierrors.NewConflict(cm, "b", errors.New("field manager")), CauseRejected, false},
		{"apply, 429", StageApply, apierrors.NewTooManyRequests("slow down", 1), CauseOverloaded, true},
		{"apply, etcd", StageApply, apierrors.NewInternalError(errors.New("etcdserver: request timed out")), CauseOverloaded, true},
		{"apply, 503", StageApply, apierrors.NewServiceUnavailable("etcd"), CauseOverloaded, true},
		{"apply, server timeout", StageApply, apierrors.NewServerTimeout(cm, "patch", 1), CauseOverloaded, true},
		// An admission webhook's connection error is the API server's
		// answer, not an outage: its words do not count.
		{"apply, webhook unreachable", StageApply, fmt.Errorf("apply ConfigMap/a/b: %w", webhook), CauseOverloaded, true},
		{"validate, unknown field", StageValidate, fmt.Errorf("ConfigMap/a/b: dry-run: %w", apierrors.NewInternalError(errors.New(
			"failed to create typed patch object (a/b; /v1, Kind=ConfigMap): .metadata.cycle: field not declared in schema"))), CauseRejected, false},
		{"apply, rejected and unreachable", StageApply, errors.Join(invalid, refused), CauseUnreachable, true},
		{"apply, rejected in a batch", StageApply, errors.Join(errors.New("1 of 2 failed"), invalid), CauseRejected, false},
		{"apply, redacted", StageApply, &redactedError{err: refused, msg: "x"}, CauseUnreachable, true},
		{"prune, refused", StagePrune, refused, CauseUnreachable, true},
		{"health, timeout", StageHealth, fmt.Errorf("not healthy after 5m: %w", context.DeadlineExceeded), CauseOther, true},
		{"health, caller gave up", StageHealth, &url.Error{Op: "Get", URL: "u", Err: context.Canceled}, CauseOther, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cause, transient := Classify(tc.stage, tc.err)
			if cause != tc.cause || transient != tc.transient {
				t.Errorf("Classify(%s, %v) = %s, %v; want %s, %v", tc.stage, tc.err, cause, transient, tc.cause, tc.transient)
			}
		})
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// flakyServer is an HTTP server on a fixed address that can be stopped
// and started again, as an API server restarts.
type flakyServer struct {
	t    *testing.T
	addr string
	srv  *http.Server
}

func newFlakyServer(t *testing.T) *flakyServer {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &flakyServer{t: t, addr: l.Addr().String()}
	f.serve(l)
	t.Cleanup(f.stop)
	return f
}

func (f *flakyServer) serve(l net.Listener) {
	f.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })}
	go f.srv.Serve(l)
}

func (f *flakyServer) stop() { f.srv.Close() }

func (f *flakyServer) start() {
	l, err := net.Listen("tcp", f.addr)
	if err != nil {
		f.t.Fatal(err)
	}
	f.serve(l)
}

func TestAPIReachability(t *testing.T) {
	srv := newFlakyServer(t)
	var logs syncBuffer
	var client *http.Client
	get := func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+srv.addr+"/readyz", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	reach := NewAPIReachability(APIReachabilityOptions{Probe: get, ProbeInterval: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	client = &http.Client{Transport: reach.WrapTransport(&http.Transport{DisableKeepAlives: true})}
	ctx := context.Background()

	if err := get(ctx); err != nil {
		t.Fatal(err)
	}
	if reach.Down() || reach.Wait() != nil {
		t.Fatal("down, or a wait, before any failure")
	}

	srv.stop()
	if err := get(ctx); err == nil {
		t.Fatal("a request to a stopped server succeeded")
	}
	back := reach.Wait()
	if back == nil {
		t.Fatal("no wait after a refused connection")
	}
	waitFor(t, "the outage to be seen", reach.Down)
	// More failures, and a wait of each, are one outage.
	for range 3 {
		get(ctx)
	}
	if reach.Wait() != back {
		t.Error("a second failure made a second wait")
	}
	select {
	case <-back:
		t.Fatal("back before the server is")
	default:
	}

	srv.start()
	select {
	case <-back:
	case <-time.After(5 * time.Second):
		t.Fatal("the wait did not end within 5s of the server's return")
	}
	if reach.Down() {
		t.Error("still down after the server's return")
	}
	out := logs.String()
	if n := strings.Count(out, `msg="API server unreachable"`); n != 1 {
		t.Errorf("%d unreachable records, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, `msg="API server reachable" after=`); n != 1 {
		t.Errorf("%d reachable records, want 1:\n%s", n, out)
	}

	// A request its caller gave up on is nobody's outage.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	get(cctx)
	if reach.Wait() != nil {
		t.Error("a cancelled request started a probe")
	}
}

func TestAPIReachabilityOneLostConnection(t *testing.T) {
	// One failed request with a server that answers the probe: no outage,
	// no record, and the wait ends at once.
	var logs syncBuffer
	reach := NewAPIReachability(APIReachabilityOptions{Probe: func(context.Context) error { return nil },
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	reach.Failed(syscall.ECONNRESET)
	back := reach.Wait()
	if back != nil {
		select {
		case <-back:
		case <-time.After(5 * time.Second):
			t.Fatal("the wait did not end")
		}
	}
	if reach.Down() || logs.String() != "" {
		t.Errorf("down %v, logs %q after one lost connection", reach.Down(), logs.String())
	}
}

// waitFor polls cond until it holds, for up to 5 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFailureKey(t *testing.T) {
	a := errors.New("ConfigMap/a/x: apply: bad; ConfigMap/a/y: apply: bad")
	b := errors.New("ConfigMap/a/y: apply: bad; ConfigMap/a/x: apply: bad")
	if failureKey(StageApply, "r", a) != failureKey(StageApply, "r", b) {
		t.Error("the same batch failure in another order is another failure")
	}
	if failureKey(StageApply, "r", a) == failureKey(StageApply, "r2", a) || failureKey(StageApply, "r", a) == failureKey(StageValidate, "r", a) {
		t.Error("another revision or stage is the same failure")
	}
}

func TestRetryLost(t *testing.T) {
	lost := &url.Error{Op: "Patch", URL: "u", Err: &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}}
	calls := 0
	v, err := retryLost(context.Background(), func() (int, error) {
		if calls++; calls < 3 {
			return 0, lost
		}
		return 7, nil
	})
	if v != 7 || err != nil || calls != 3 {
		t.Errorf("lost twice then answered: %d, %v after %d calls; want 7, nil after 3", v, err, calls)
	}
	calls = 0
	invalid := apierrors.NewInvalid(schema.GroupKind{Kind: "ConfigMap"}, "b", nil)
	if _, err := retryLost(context.Background(), func() (int, error) { calls++; return 0, invalid }); err != invalid || calls != 1 {
		t.Errorf("an answer was retried: %v after %d calls", err, calls)
	}
	calls = 0
	if _, err := retryLost(context.Background(), func() (int, error) { calls++; return 0, lost }); err != lost || calls != 1+len(lostRetries) {
		t.Errorf("always lost: %v after %d calls, want %d", err, calls, 1+len(lostRetries))
	}
}
