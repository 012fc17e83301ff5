package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gitopsd/gitopsd/reconciler"
	"github.com/gitopsd/gitopsd/reconciler/drift"
)

// newRegistry returns the Prometheus registry of the process: gitopsd's
// series plus the Go runtime and process collectors.
func newRegistry() (*prometheus.Registry, *reconciler.Metrics) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg, reconciler.NewMetrics(reg)
}

// syncView is one sync as the status endpoints show it.
type syncView struct {
	name, source, path string
	gitURL             string // for webhooks; "" for a directory
	loop               *reconciler.Loop
	watcher            *reconciler.Watcher
	// stuckAfter is how long one sync may run before the loop counts as
	// wedged (/healthz fails): every timeout a sync has, and a minute.
	stuckAfter time.Duration
}

// statusServer serves /healthz, /readyz, /metrics, /status and the page.
type statusServer struct {
	syncs   func() []syncView
	reg     *prometheus.Registry
	logger  *slog.Logger
	leading *leading
	hooks   *hooks // nil: no webhook endpoints
	api     *reconciler.APIReachability
}

func (s *statusServer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg}))
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(s.status())
	})
	if s.hooks != nil {
		s.hooks.register(mux)
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err := pageTemplate.Execute(w, s.status()); err != nil {
			s.logger.Error("status page", "error", err.Error())
		}
	})
	return mux
}

// healthz is the liveness check: the process answers, and no sync loop is
// wedged in one sync for longer than all of that sync's timeouts allow, so
// that the kubelet restarts a replica a hung fetch or request holds.
func (s *statusServer) healthz(w http.ResponseWriter, _ *http.Request) {
	for _, sv := range s.syncs() {
		if busy := sv.loop.Busy(); sv.stuckAfter > 0 && busy > sv.stuckAfter {
			http.Error(w, fmt.Sprintf("sync %s: one sync has run for %s, longer than its timeouts allow (%s)",
				sv.name, busy.Round(time.Second), sv.stuckAfter), http.StatusServiceUnavailable)
			return
		}
	}
	_, _ = w.Write([]byte("ok\n"))
}

// readyz is ready once every sync has succeeded once, and not while the
// API server is unreachable; a standby (leader election) is ready as it
// is, so that a rollout can proceed.
func (s *statusServer) readyz(w http.ResponseWriter, _ *http.Request) {
	if down, since := s.api.Unreachable(); down {
		http.Error(w, "the API server has not answered since "+since.UTC().Format(time.RFC3339), http.StatusServiceUnavailable)
		return
	}
	if !s.leading.Leading() {
		_, _ = w.Write([]byte("ok (standby)\n"))
		return
	}
	for _, sv := range s.syncs() {
		if sv.loop.Status().LastApplied == "" {
			http.Error(w, "sync "+sv.name+": no successful sync yet", http.StatusServiceUnavailable)
			return
		}
	}
	_, _ = w.Write([]byte("ok\n"))
}

// Status is the /status document.
type Status struct {
	// Leader is false on a standby replica, which does not sync.
	Leader bool         `json:"leader"`
	Syncs  []SyncStatus `json:"syncs"`
}

// SyncStatus is one sync's state.
type SyncStatus struct {
	Name        string          `json:"name"`
	Source      string          `json:"source"`
	Path        string          `json:"path"`
	LastApplied string          `json:"lastApplied"`
	LastSync    *LastSync       `json:"lastSync,omitempty"`
	Findings    []FindingStatus `json:"findings"`
	reconciler.View
}

// LastSync is the outcome of the latest sync.
type LastSync struct {
	Result     string    `json:"result"` // success or failure
	Revision   string    `json:"revision"`
	Stage      string    `json:"stage,omitempty"`
	Error      string    `json:"error,omitempty"`
	Time       time.Time `json:"time"`
	Duration   string    `json:"duration"`
	Created    int       `json:"created"`
	Configured int       `json:"configured"`
	Unchanged  int       `json:"unchanged"`
	Pruned     int       `json:"pruned"`
}

// FindingStatus is an open drift finding, with the keys of its log record.
type FindingStatus struct {
	Drift  string            `json:"drift"`
	Object string            `json:"object"`
	Detail string            `json:"detail"`
	Attrs  map[string]string `json:"attrs,omitempty"`
}

func (s *statusServer) status() Status {
	st := Status{Leader: s.leading.Leading()}
	for _, sv := range s.syncs() {
		ls := sv.loop.Status()
		ss := SyncStatus{Name: sv.name, Source: sv.source, Path: sv.path, LastApplied: ls.LastApplied,
			Findings: findingStatuses(sv.watcher.Open()), View: sv.watcher.View()}
		if !ls.At.IsZero() {
			last := &LastSync{Result: "success", Revision: ls.Last.Revision, Time: ls.At.UTC(),
				Duration: ls.Last.Duration.Round(time.Millisecond).String(),
				Created:  ls.Last.Count(reconciler.Created), Configured: ls.Last.Count(reconciler.Configured),
				Unchanged: ls.Last.Count(reconciler.Unchanged), Pruned: ls.Last.Count(reconciler.Pruned)}
			if ls.Err != nil {
				se := &reconciler.SyncError{Err: ls.Err}
				errors.As(ls.Err, &se)
				last.Result, last.Stage, last.Error = "failure", string(se.Stage), se.Err.Error()
			}
			ss.LastSync = last
		}
		st.Syncs = append(st.Syncs, ss)
	}
	return st
}

func findingStatuses(open []drift.Finding) []FindingStatus {
	out := []FindingStatus{}
	for _, f := range open {
		fs := FindingStatus{Drift: string(f.Code), Object: f.Object.String(), Detail: f.Detail, Attrs: map[string]string{}}
		for _, a := range f.Attrs {
			fs.Attrs[a.Key] = a.Value.String()
		}
		out = append(out, fs)
	}
	return out
}

// serveHTTP serves until ctx ends; the address actually bound (":0" picks
// a free port) is logged as `http listening`.
func serveHTTP(ctx context.Context, addr string, h http.Handler, logger *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
	logger.Info("http listening", "addr", ln.Addr().String())
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

//go:embed status.html
var pageHTML string

var pageTemplate = template.Must(template.New("status").Parse(pageHTML))
