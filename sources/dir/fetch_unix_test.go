//go:build unix

package dir_test

import (
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/sources/dir"
)

// TestFetchSpecialFiles checks that pipes and sockets count by their
// presence and mode only: a Fetch that opened the pipe would block, or
// fail, and one that listed the ignored directory would see its pipe.
func TestFetchSpecialFiles(t *testing.T) {
	tree := map[string]string{
		".gitignore":         "/ignored/\n*.pipe\n",
		"kustomization.yaml": "resources: []\n",
		"ignored/":           "",
	}
	plain := withTree(t, tree)
	root := withTree(t, tree)
	for _, name := range []string{"fifo", "ignored/fifo", "ignored.pipe"} {
		if err := syscall.Mkfifo(filepath.Join(root, name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l, err := net.Listen("unix", filepath.Join(root, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	src := newSource(t, dir.Options{Path: root})
	type result struct {
		snap dir.Snapshot
		err  error
	}
	done := make(chan result, 1)
	go func() {
		snap, err := src.Fetch(t.Context())
		done <- result{snap, err}
	}()
	var got result
	select {
	case got = <-done:
	case <-time.After(signalTimeout):
		t.Fatalf("Fetch of a tree with pipes did not return within %v", signalTimeout)
	}
	if got.err != nil {
		t.Fatalf("Fetch: %v", got.err)
	}
	if got.snap.Revision == fetch(t, newSource(t, dir.Options{Path: plain})).Revision {
		t.Errorf("revision %s unchanged by a pipe and a socket", got.snap.Revision)
	}

	// Without the pipe and the socket the revision covers, the tree
	// hashes as the one without any.
	l.Close()
	for _, name := range []string{"fifo", "sock"} {
		remove(name)(t, root)
	}
	if a, b := fetch(t, src).Revision, fetch(t, newSource(t, dir.Options{Path: plain})).Revision; a != b {
		t.Errorf("revision %s with only ignored pipes, want %s as without them", a, b)
	}
}
