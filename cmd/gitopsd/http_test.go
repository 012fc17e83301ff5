package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/reconciler"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(body)
}

func TestStatusServer(t *testing.T) {
	reg, metrics := newRegistry()
	loop := reconciler.NewLoop(nil, reconciler.LoopOptions{})
	watcher := reconciler.NewWatcher(nil, nil, nil, reconciler.WatcherOptions{})
	state := &leading{}
	s := &statusServer{reg: reg, leading: state, syncs: func() []syncView {
		return []syncView{{name: "dev", source: "git:x", path: "overlays/dev", loop: loop, watcher: watcher}}
	}}
	h := s.handler()

	if code, _ := get(t, h, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz %d", code)
	}
	if code, body := get(t, h, "/readyz"); code != http.StatusOK || !strings.Contains(body, "standby") {
		t.Errorf("/readyz of a standby: %d %q, want 200 standby", code, body)
	}
	state.on.Store(true)
	if code, body := get(t, h, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "dev") {
		t.Errorf("/readyz of a leader before its first sync: %d %q, want 503 naming the sync", code, body)
	}

	metrics.ObserveSync("dev", reconciler.SyncResult{Duration: time.Second, FetchDuration: time.Millisecond},
		&reconciler.SyncError{Stage: reconciler.StageBuild, Err: errors.New("overlays/dev/kustomization.yaml: bad")}, time.Now())
	_, body := get(t, h, "/metrics")
	for _, want := range []string{`gitopsd_sync_failures_total{stage="build",sync="dev"} 1`, `gitopsd_sync_duration_seconds_count{result="failure",sync="dev"} 1`,
		`gitopsd_source_fetch_duration_seconds_count{sync="dev"} 1`, "go_goroutines", "process_resident_memory_bytes"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	code, body := get(t, h, "/status")
	var st Status
	if err := json.Unmarshal([]byte(body), &st); err != nil || code != http.StatusOK {
		t.Fatalf("/status %d %s: %v", code, body, err)
	}
	if !st.Leader || len(st.Syncs) != 1 || st.Syncs[0].Name != "dev" || st.Syncs[0].LastSync != nil || st.Syncs[0].Findings == nil {
		t.Errorf("/status %+v", st)
	}
	if code, page := get(t, h, "/"); code != http.StatusOK || !strings.Contains(page, "overlays/dev") || !strings.Contains(page, "No sync yet") {
		t.Errorf("page %d:\n%s", code, page)
	}
	if code, _ := get(t, h, "/nothing"); code != http.StatusNotFound {
		t.Errorf("/nothing %d, want 404", code)
	}
}

// hungSource is a source whose fetch never returns until its context ends.
type hungSource struct{}

func (hungSource) Fetch(ctx context.Context) (reconciler.Snapshot, error) {
	<-ctx.Done()
	return reconciler.Snapshot{}, ctx.Err()
}
func (hungSource) String() string { return "hung" }

func TestHealthzFailsWhenALoopIsStuck(t *testing.T) {
	loop := reconciler.NewLoop(reconciler.NewSyncer(hungSource{}, nil, nil, nil, reconciler.SyncOptions{}), reconciler.LoopOptions{})
	reg, _ := newRegistry()
	s := &statusServer{reg: reg, leading: &leading{}, syncs: func() []syncView {
		return []syncView{{name: "dev", loop: loop, stuckAfter: 200 * time.Millisecond}}
	}}
	h := s.handler()
	if code, _ := get(t, h, "/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz of an idle loop: %d", code)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { loop.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, body := get(t, h, "/healthz")
		if code == http.StatusServiceUnavailable {
			if !strings.Contains(body, "sync dev") {
				t.Errorf("/healthz of a stuck loop does not name it: %q", body)
			}
			if loop.Busy() < 200*time.Millisecond {
				t.Errorf("failed after %s, before stuckAfter", loop.Busy())
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz still %d with a loop stuck for %s", code, loop.Busy())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
