package git

import (
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Fixtures for the end-to-end tests: repositories made with go-git in a
// temp dir, served by the real git http-backend over net/http/cgi (go-git's
// own server cannot serve shallow fetches).

// testRepo is an upstream repository with a worktree, edited by tests.
type testRepo struct {
	t    *testing.T
	dir  string
	repo *gogit.Repository
	when time.Time // commit time, advanced per commit so hashes are stable
}

// newTestRepo makes an empty repository at <root>/<name> whose HEAD is
// refs/heads/<branch>.
func newTestRepo(t *testing.T, root, name, branch string) *testRepo {
	t.Helper()
	dir := filepath.Join(root, name)
	repo, err := gogit.PlainInitWithOptions(dir, &gogit.PlainInitOptions{
		InitOptions: gogit.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName(branch)},
	})
	if err != nil {
		t.Fatalf("init %s: %v", dir, err)
	}
	return &testRepo{t: t, dir: dir, repo: repo, when: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

// write creates or replaces a file in the worktree; an empty content with
// mode 0 deletes it.
func (r *testRepo) write(name, content string, mode os.FileMode) {
	r.t.Helper()
	p := filepath.Join(r.dir, name)
	if mode == 0 {
		if err := os.Remove(p); err != nil {
			r.t.Fatal(err)
		}
		return
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		r.t.Fatal(err)
	}
}

func (r *testRepo) symlink(name, target string) {
	r.t.Helper()
	if err := os.Symlink(target, filepath.Join(r.dir, name)); err != nil {
		r.t.Fatal(err)
	}
}

// commit stages everything and commits it, returning the commit hash.
func (r *testRepo) commit(msg string, opts ...func(*gogit.CommitOptions)) plumbing.Hash {
	r.t.Helper()
	w, err := r.repo.Worktree()
	if err != nil {
		r.t.Fatal(err)
	}
	if err := w.AddWithOptions(&gogit.AddOptions{All: true}); err != nil {
		r.t.Fatalf("add: %v", err)
	}
	r.when = r.when.Add(time.Minute)
	co := &gogit.CommitOptions{
		Author:            &object.Signature{Name: "Test", Email: "test@example.com", When: r.when},
		AllowEmptyCommits: true,
	}
	for _, o := range opts {
		o(co)
	}
	h, err := w.Commit(msg, co)
	if err != nil {
		r.t.Fatalf("commit: %v", err)
	}
	return h
}

// commitFile writes one file and commits it.
func (r *testRepo) commitFile(name, content string) plumbing.Hash {
	r.t.Helper()
	r.write(name, content, 0o644)
	return r.commit("update " + name)
}

// resetHard moves the checked-out branch to h, like git reset --hard: the
// next commit rewrites history (a force-push as the remote sees it).
func (r *testRepo) resetHard(h plumbing.Hash) {
	r.t.Helper()
	w, err := r.repo.Worktree()
	if err != nil {
		r.t.Fatal(err)
	}
	if err := w.Reset(&gogit.ResetOptions{Commit: h, Mode: gogit.HardReset}); err != nil {
		r.t.Fatalf("reset: %v", err)
	}
}

func (r *testRepo) setRef(name plumbing.ReferenceName, h plumbing.Hash) {
	r.t.Helper()
	if err := r.repo.Storer.SetReference(plumbing.NewHashReference(name, h)); err != nil {
		r.t.Fatal(err)
	}
}

// tag creates a tag; annotated tags get a tag object.
func (r *testRepo) tag(name string, h plumbing.Hash, annotated bool) {
	r.t.Helper()
	var opts *gogit.CreateTagOptions
	if annotated {
		opts = &gogit.CreateTagOptions{
			Tagger:  &object.Signature{Name: "Test", Email: "test@example.com", When: r.when},
			Message: "release " + name,
		}
	}
	if _, err := r.repo.CreateTag(name, h, opts); err != nil {
		r.t.Fatalf("tag %s: %v", name, err)
	}
}

// gitServer serves every repository under root with git http-backend and
// counts requests, so tests can tell an ls-remote from a fetch.
type gitServer struct {
	*httptest.Server
	root     string
	lsRemote atomic.Int64 // GET .../info/refs
	fetches  atomic.Int64 // POST .../git-upload-pack
}

// requireGit skips tests that need the git binary (http-backend and, for
// local paths, go-git's file transport run it).
func requireGit(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("git")
	if err != nil {
		t.Fatal("git binary not found; needed for git http-backend and file transport")
	}
	return p
}

// newGitServer serves root; extraEnv adds git config, e.g. to allow
// fetching any reachable commit.
func newGitServer(t *testing.T, root string, extraEnv ...string) *gitServer {
	t.Helper()
	gitBin := requireGit(t)
	s := &gitServer{root: root}
	backend := &cgi.Handler{
		Path: gitBin,
		Args: []string{"http-backend"},
		Env: append([]string{
			"GIT_PROJECT_ROOT=" + root,
			"GIT_HTTP_EXPORT_ALL=1",
			"HOME=" + t.TempDir(),
			"GIT_CONFIG_NOSYSTEM=1",
		}, extraEnv...),
	}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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

// counts returns and resets the request counters.
func (s *gitServer) counts() (lsRemote, fetches int64) {
	return s.lsRemote.Swap(0), s.fetches.Swap(0)
}

func (s *gitServer) repoURL(name string) string { return s.URL + "/" + name }

// allowAnySHA is git config for newGitServer that lets clients fetch a
// commit by hash.
var allowAnySHA = []string{
	"GIT_CONFIG_COUNT=1",
	"GIT_CONFIG_KEY_0=uploadpack.allowReachableSHA1InWant",
	"GIT_CONFIG_VALUE_0=true",
}

// readTree describes every entry under dir, for comparing with cmp.Diff:
// "file 0644 <content>", "exec 0755 <content>", "link -> <target>", "dir".
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case info.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			got[rel] = "link -> " + target
		case info.IsDir():
			got[rel] = "dir"
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			kind := "file"
			if info.Mode()&0o111 != 0 {
				kind = "exec"
			}
			got[rel] = kind + " " + string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("read snapshot %s: %v", dir, err)
	}
	return got
}
