package git

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/storage"

	"github.com/gitopsd/gitopsd/test/gitserver"
)

// silentListener accepts TCP connections and never sends a byte.
func silentListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	return ln.Addr().String()
}

// TestFetchTimesOutOnSilentServers: over ssh, go-git does the handshake
// without a deadline, and over git:// it dials without one; a server that
// accepts and says nothing must still fail the Fetch at Options.Timeout.
func TestFetchTimesOutOnSilentServers(t *testing.T) {
	const timeout = 2 * time.Second
	key, _ := gitserver.NewSSHKey(t, "")
	tests := map[string]func(addr string) Options{
		"ssh": func(addr string) Options {
			return Options{URL: "ssh://git@" + addr + "/repo.git", Auth: Auth{SSHPrivateKey: key}, InsecureSkipHostKeyCheck: true}
		},
		"git": func(addr string) Options { return Options{URL: "git://" + addr + "/repo.git"} },
	}
	for name, opts := range tests {
		t.Run(name, func(t *testing.T) {
			o := opts(silentListener(t))
			o.CacheDir, o.Timeout = t.TempDir(), timeout
			src, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, err = src.Fetch(t.Context())
			elapsed := time.Since(start)
			t.Logf("error after %v: %v", elapsed.Round(time.Millisecond), err)
			if err == nil || !strings.Contains(err.Error(), ": ls-remote: timed out after 2s (Timeout)") {
				t.Errorf("Fetch error = %v, want a timeout at stage ls-remote", err)
			}
			if elapsed > timeout+2*time.Second {
				t.Errorf("Fetch took %v, want about %v", elapsed, timeout)
			}
		})
	}
}

// mountTmpfs mounts a tmpfs of size bytes at a temp dir for the test.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("a full disk needs a tmpfs, and mounting one needs CAP_SYS_ADMIN: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fill writes into dir until its file system is full, and returns the file.
func fill(t *testing.T, dir string) string {
	t.Helper()
	name := filepath.Join(dir, "filler")
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return name
		}
	}
}

// TestFetchOnFullDisk is a file:// fetch into a cache on a full disk: go-git
// writes the shallow list before the pack, fails, and stops reading the
// pack while git-upload-pack waits to write the rest of it. The Fetch must
// fail at once naming the cache, leave no partial pack, and work again once
// there is space, without a new Source.
func TestFetchOnFullDisk(t *testing.T) {
	requireGit(t)
	const timeout = 5 * time.Second
	mnt := mountTmpfs(t, "16m")
	root := t.TempDir()
	up := newTestRepo(t, root, "repo.git", "main")
	up.commitFile("app.yaml", "v: 1\n")
	cache := filepath.Join(mnt, "cache")
	src, err := New(Options{URL: "file://" + up.dir, CacheDir: cache, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Fetch(t.Context()); err != nil {
		t.Fatalf("first Fetch: %v", err)
	}
	up.commitFile("big.bin", randomBytes(t, 2<<20)) // a pack larger than a pipe holds
	filler := fill(t, mnt)

	start := time.Now()
	_, err = src.Fetch(t.Context())
	elapsed := time.Since(start)
	t.Logf("error after %v: %v", elapsed.Round(time.Millisecond), err)
	if err == nil {
		t.Fatal("Fetch onto a full disk succeeded")
	}
	if elapsed > timeout/2 {
		t.Errorf("Fetch took %v to fail, want well under the %v timeout", elapsed, timeout)
	}
	for _, want := range []string{": fetch: ", "cache " + cache, "no space left on device"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("error %v does not wrap ENOSPC", err)
	}
	if left := packLeftovers(t, src); len(left) > 0 {
		t.Errorf("partial packs left in the cache: %v", left)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	h := up.commitFile("app.yaml", "v: 2\n")
	snap, err := src.Fetch(t.Context())
	if err != nil {
		t.Fatalf("Fetch once there is space: %v", err)
	}
	if want := revision("main", h); snap.Revision != want {
		t.Errorf("revision %q, want %q", snap.Revision, want)
	}
}

// shallowFails is cache storage whose shallow list cannot be written.
type shallowFails struct {
	storage.Storer
	path string
}

func (s shallowFails) SetShallow([]plumbing.Hash) error {
	return &fs.PathError{Op: "write", Path: s.path, Err: syscall.ENOSPC}
}

// TestFetchFileKillsUploadPackOnCacheError: go-git writes the shallow list
// once git-upload-pack has started sending the pack, and on a write error
// there stops reading and waits for the child, which waits for the pipe to
// drain. The child must be killed and the Fetch fail at once, at stage
// fetch, naming the cache; the next Fetch works.
func TestFetchFileKillsUploadPackOnCacheError(t *testing.T) {
	requireGit(t)
	const timeout = 5 * time.Second
	up := newTestRepo(t, t.TempDir(), "repo.git", "main")
	up.commitFile("app.yaml", "v: 1\n")
	src, err := New(Options{URL: "file://" + up.dir, CacheDir: t.TempDir(), Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Fetch(t.Context()); err != nil {
		t.Fatalf("first Fetch: %v", err)
	}
	up.commitFile("big.bin", randomBytes(t, 2<<20)) // a pack larger than a pipe holds
	src.faults = func(st storage.Storer) storage.Storer {
		return shallowFails{st, filepath.Join(src.repoDir(), "shallow")}
	}

	start := time.Now()
	_, err = src.Fetch(t.Context())
	elapsed := time.Since(start)
	t.Logf("error after %v: %v", elapsed.Round(time.Millisecond), err)
	if err == nil {
		t.Fatal("Fetch succeeded")
	}
	if elapsed > timeout/2 {
		t.Errorf("Fetch took %v to fail, want well under the %v timeout", elapsed, timeout)
	}
	for _, want := range []string{": fetch: cache " + src.cacheDir + ": ", "no space left on device"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if left := packLeftovers(t, src); len(left) > 0 {
		t.Errorf("partial packs left in the cache: %v", left)
	}

	src.faults = nil
	h := up.commitFile("app.yaml", "v: 2\n")
	snap, err := src.Fetch(t.Context())
	if err != nil {
		t.Fatalf("Fetch once the cache is writable: %v", err)
	}
	if want := revision("main", h); snap.Revision != want {
		t.Errorf("revision %q, want %q", snap.Revision, want)
	}
}
