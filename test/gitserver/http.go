package gitserver

import (
	"fmt"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
)

// HTTP serves every repository under Root with git http-backend. It counts
// requests, so a test can tell an ls-remote from a fetch, and Down makes it
// answer 503, as a git host in an outage. Its methods may be called
// concurrently.
type HTTP struct {
	*httptest.Server
	// Root is the directory whose repositories are served.
	Root string

	lsRemote atomic.Int64 // GET .../info/refs
	fetches  atomic.Int64 // POST .../git-upload-pack
	down     atomic.Bool
}

// NewHTTP serves the repositories under root until the test ends. gitConfig
// holds "key=value" git config for the server, e.g.
// "uploadpack.allowReachableSHA1InWant=true" to let clients fetch a commit by
// hash; system and user config are ignored.
func NewHTTP(t testing.TB, root string, gitConfig ...string) *HTTP {
	t.Helper()
	env := []string{
		"GIT_PROJECT_ROOT=" + root,
		"GIT_HTTP_EXPORT_ALL=1",
		"HOME=" + t.TempDir(),
		"GIT_CONFIG_NOSYSTEM=1",
	}
	if len(gitConfig) > 0 {
		env = append(env, fmt.Sprintf("GIT_CONFIG_COUNT=%d", len(gitConfig)))
	}
	for i, kv := range gitConfig {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			t.Fatalf("git config %q: want key=value", kv)
		}
		env = append(env, fmt.Sprintf("GIT_CONFIG_KEY_%d=%s", i, k), fmt.Sprintf("GIT_CONFIG_VALUE_%d=%s", i, v))
	}
	backend := &cgi.Handler{Path: gitBinary(t), Args: []string{"http-backend"}, Env: env}
	s := &HTTP{Root: root}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.down.Load() {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		switch {
		case strings.HasSuffix(r.URL.Path, "/info/refs"):
			s.lsRemote.Add(1)
		case strings.HasSuffix(r.URL.Path, "/git-upload-pack"):
			s.fetches.Add(1)
		}
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

// RepoURL is the URL of the repository at Root/name.
func (s *HTTP) RepoURL(name string) string { return s.URL + "/" + name }

// Counts returns the ref advertisements (GET info/refs) and fetches (POST
// git-upload-pack) served since the last call, and resets both. That is one
// each per ls-remote and fetch under git protocol v0 and v1, which go-git
// speaks; a v2 client also POSTs its ls-refs. Requests answered 503 by Down
// are not counted.
func (s *HTTP) Counts() (lsRemote, fetches int64) {
	return s.lsRemote.Swap(0), s.fetches.Swap(0)
}

// Down switches the outage on or off: while down, every request gets 503.
func (s *HTTP) Down(down bool) { s.down.Store(down) }

// gitBinary is the path of git, which both servers run.
func gitBinary(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("git")
	if err != nil {
		t.Fatalf("gitserver: the git binary is required: %v", err)
	}
	return p
}
