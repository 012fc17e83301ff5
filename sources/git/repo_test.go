package git

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Fixtures for the end-to-end tests: repositories made with go-git in a
// temp dir, served by test/gitserver.

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

// requireGit fails tests that need the git binary: go-git's file transport
// runs it for local paths.
func requireGit(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatal("git binary not found; needed for the file transport")
	}
}

// allowAnySHA is git config for gitserver.NewHTTP that lets clients fetch a
// commit by hash.
var allowAnySHA = []string{"uploadpack.allowReachableSHA1InWant=true"}

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
