package gitserver_test

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"

	"github.com/gitopsd/gitopsd/test/gitserver"
)

// git runs the git binary in dir and returns its trimmed output.
func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com", "GIT_TERMINAL_PROMPT=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// newBareRepo makes root/name, a bare repository with one commit on main,
// and returns the commit.
func newBareRepo(t *testing.T, root, name string) string {
	t.Helper()
	work := t.TempDir()
	git(t, work, "init", "--quiet", "--initial-branch=main")
	git(t, work, "commit", "--quiet", "--allow-empty", "-m", "first")
	git(t, root, "clone", "--quiet", "--bare", work, filepath.Join(root, name))
	return git(t, work, "rev-parse", "HEAD")
}

func TestHTTPCountsAndDown(t *testing.T) {
	root := t.TempDir()
	head := newBareRepo(t, root, "repo.git")
	srv := gitserver.NewHTTP(t, root, "uploadpack.allowReachableSHA1InWant=true")

	// Protocol v0, as go-git speaks it: v2 also POSTs the ref listing.
	if out := git(t, root, "-c", "protocol.version=0", "ls-remote", srv.RepoURL("repo.git"), "main"); !strings.HasPrefix(out, head) {
		t.Errorf("ls-remote = %q, want %s", out, head)
	}
	git(t, root, "-c", "protocol.version=0", "clone", "--quiet", srv.RepoURL("repo.git"), filepath.Join(t.TempDir(), "clone"))
	if ls, fetches := srv.Counts(); ls != 2 || fetches != 1 {
		t.Errorf("Counts = %d ls-remote, %d fetches; want 2, 1", ls, fetches)
	}
	if ls, fetches := srv.Counts(); ls != 0 || fetches != 0 {
		t.Errorf("Counts after a reset = %d, %d; want 0, 0", ls, fetches)
	}

	srv.Down(true)
	resp, err := http.Get(srv.RepoURL("repo.git") + "/info/refs?service=git-upload-pack")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("while down: status %d, want 503", resp.StatusCode)
	}
	srv.Down(false)
	git(t, root, "-c", "protocol.version=0", "ls-remote", srv.RepoURL("repo.git"))
	if ls, _ := srv.Counts(); ls != 1 {
		t.Errorf("Counts after the outage = %d ls-remote, want 1 (503s are not counted)", ls)
	}
}

func TestSSHFetchAndPush(t *testing.T) {
	root := t.TempDir()
	newBareRepo(t, root, "repo.git")
	key, pub := gitserver.NewSSHKey(t, "")
	srv := gitserver.NewSSH(t, root, pub)
	auth, err := gitssh.NewPublicKeys("git", key, "")
	if err != nil {
		t.Fatal(err)
	}
	auth.HostKeyCallback = ssh.FixedHostKey(srv.HostKey)

	work := t.TempDir()
	repo, err := gogit.PlainClone(work, false, &gogit.CloneOptions{URL: srv.RepoURL("repo.git"), Auth: auth})
	if err != nil {
		t.Fatalf("clone (git-upload-pack): %v", err)
	}
	w, err := repo.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	h, err := w.Commit("second", &gogit.CommitOptions{AllowEmptyCommits: true,
		Author: &object.Signature{Name: "t", Email: "t@example.com", When: time.Now()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.Push(&gogit.PushOptions{Auth: auth}); err != nil {
		t.Fatalf("push (git-receive-pack): %v", err)
	}
	if got := git(t, root, "--git-dir", filepath.Join(root, "repo.git"), "rev-parse", "main"); got != h.String() {
		t.Errorf("main on the server = %s after the push, want %s", got, h)
	}
}

func TestSSHRefuses(t *testing.T) {
	root := t.TempDir()
	newBareRepo(t, root, "repo.git")
	outside := t.TempDir()
	newBareRepo(t, outside, "secret.git")
	sibling := root + "-sibling" // shares root's name as a prefix
	if err := os.Mkdir(sibling, 0o755); err != nil {
		t.Fatal(err)
	}
	newBareRepo(t, sibling, "repo.git")
	if err := os.Symlink(filepath.Join(outside, "secret.git"), filepath.Join(root, "link.git")); err != nil {
		t.Fatal(err)
	}
	key, pub := gitserver.NewSSHKey(t, "")
	srv := gitserver.NewSSH(t, root, pub)
	signer, err := ssh.ParsePrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	client, err := ssh.Dial("tcp", srv.Addr, &ssh.ClientConfig{User: "git",
		Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: ssh.FixedHostKey(srv.HostKey)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	run := func(cmd string) error {
		sess, err := client.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Close()
		sess.Stdin = strings.NewReader("0000") // a flush: the client wants nothing
		return sess.Run(cmd)
	}

	if err := run("git-upload-pack '" + filepath.Join(root, "repo.git") + "'"); err != nil {
		t.Fatalf("upload-pack of a served repository: %v", err)
	}
	if err := run("git-upload-pack 'repo.git'"); err != nil {
		t.Fatalf("upload-pack of a path relative to the root: %v", err)
	}
	for name, cmd := range map[string]string{
		"dot-dot out of the root":       "git-upload-pack '" + root + "/../" + filepath.Base(outside) + "/secret.git'", // not Joined: that would clean the ..
		"relative dot-dot":              "git-upload-pack '../" + filepath.Base(outside) + "/secret.git'",
		"absolute path elsewhere":       "git-receive-pack '" + filepath.Join(outside, "secret.git") + "'",
		"symlink out of the root":       "git-upload-pack '" + filepath.Join(root, "link.git") + "'",
		"a prefix that is not the root": "git-upload-pack '" + filepath.Join(sibling, "repo.git") + "'",
		"another command":               "sh -c 'id'",
		"unquoted path":                 "git-upload-pack " + filepath.Join(root, "repo.git"),
	} {
		t.Run(name, func(t *testing.T) {
			if err := run(cmd); err == nil {
				t.Errorf("%s ran, want it refused", cmd)
			}
		})
	}

	t.Run("unknown client key", func(t *testing.T) {
		other, _ := gitserver.NewSSHKey(t, "")
		signer, err := ssh.ParsePrivateKey(other)
		if err != nil {
			t.Fatal(err)
		}
		_, err = ssh.Dial("tcp", srv.Addr, &ssh.ClientConfig{User: "git",
			Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: ssh.FixedHostKey(srv.HostKey)})
		if err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
			t.Errorf("Dial with an unknown key = %v, want unable to authenticate", err)
		}
	})
}
