package dir_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gitopsd/gitopsd/sources/dir"
)

// testDebounce keeps the tests quick while leaving room for a loaded
// machine to deliver one change's events within it.
const testDebounce = 100 * time.Millisecond

// quiet is how long without a signal counts as settled.
const quiet = 3 * testDebounce

func TestRunSignalsEdit(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{"kustomization.yaml": "resources: []\n"})
	src := newSource(t, dir.Options{Path: root, Debounce: testDebounce})
	start(t, src)
	before := fetch(t, src).Revision

	writeTree(t, root, map[string]string{"kustomization.yaml": "resources:\n- base\n"})
	waitSignal(t, src, "edit")

	if after := fetch(t, src).Revision; after == before {
		t.Errorf("revision %s unchanged by edit", after)
	}
}

func TestRunWatchesNewDirectories(t *testing.T) {
	tests := map[string]string{
		"one level": "base",
		// Created faster than a watch can be added on each level: the walk
		// of the new directory must find the levels below.
		"nested": "overlays/prod/patches",
	}
	for name, sub := range tests {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			src := newSource(t, dir.Options{Path: root, Debounce: testDebounce})
			start(t, src)

			if err := os.MkdirAll(filepath.Join(root, sub), 0o755); err != nil {
				t.Fatal(err)
			}
			waitSignal(t, src, "mkdir "+sub)
			drain(t, src, quiet)

			// Only a watch on the new directory itself sees this.
			writeTree(t, root, map[string]string{sub + "/patch.yaml": "a"})
			waitSignal(t, src, "write in "+sub)
		})
	}
}

func TestRunRemovedAndRenamedDirectories(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		"kustomization.yaml": "resources: []\n",
		"base/a.yaml":        "a",
		"base/deep/b.yaml":   "b",
	})
	src := newSource(t, dir.Options{Path: root, Debounce: testDebounce})
	start(t, src)

	if err := os.RemoveAll(filepath.Join(root, "base")); err != nil {
		t.Fatal(err)
	}
	waitSignal(t, src, "remove base")
	drain(t, src, quiet)
	want := fetch(t, newSource(t, dir.Options{Path: withTree(t, map[string]string{"kustomization.yaml": "resources: []\n"})}))
	if diff := cmp.Diff(want.Revision, fetch(t, src).Revision); diff != "" {
		t.Errorf("revision after removing base (-want +got):\n%s", diff)
	}

	// Recreated at the same name, then renamed: the watch must follow.
	writeTree(t, root, map[string]string{"base/deep/b.yaml": "b"})
	waitSignal(t, src, "recreate base")
	drain(t, src, quiet)
	if err := os.Rename(filepath.Join(root, "base"), filepath.Join(root, "moved")); err != nil {
		t.Fatal(err)
	}
	waitSignal(t, src, "rename base to moved")
	drain(t, src, quiet)

	// inotify's watches follow a renamed directory, under its old name;
	// both levels must be watched under the new one.
	writeTree(t, root, map[string]string{"moved/c.yaml": "c"})
	waitSignal(t, src, "write in moved")
	drain(t, src, quiet)
	writeTree(t, root, map[string]string{"moved/deep/d.yaml": "d"})
	waitSignal(t, src, "write in moved/deep")
}

// withTree returns a new directory holding entries.
func withTree(t *testing.T, entries map[string]string) string {
	t.Helper()
	root := t.TempDir()
	writeTree(t, root, entries)
	return root
}

// TestRunSymlinkSwap publishes revisions as git-sync does: each in its own
// worktree, and Path a symlink that is swapped atomically by renaming a new
// link over it (ln -s new tmp && mv -T tmp current).
func TestRunSymlinkSwap(t *testing.T) {
	base := t.TempDir()
	writeTree(t, base, map[string]string{
		".worktrees/aaa/kustomization.yaml": "resources: []\n",
		".worktrees/aaa/.git":               "gitdir: ../../.git/worktrees/aaa\n",
		".worktrees/bbb/kustomization.yaml": "resources:\n- base\n",
		".worktrees/bbb/.git":               "gitdir: ../../.git/worktrees/bbb\n",
		".worktrees/bbb/base/":              "",
		"current":                           "->.worktrees/aaa",
	})
	src := newSource(t, dir.Options{Path: filepath.Join(base, "current"), Debounce: testDebounce})
	start(t, src)
	before := fetch(t, src)

	replaceLink(t, filepath.Join(base, "current"), ".worktrees/bbb")
	waitSignal(t, src, "swap of current")
	after := fetch(t, src)

	if diff := cmp.Diff(resolved(t, filepath.Join(base, ".worktrees/bbb")), after.Dir); diff != "" {
		t.Errorf("Dir after swap (-want +got):\n%s", diff)
	}
	if after.Revision == before.Revision {
		t.Errorf("revision %s unchanged by swap", after.Revision)
	}

	drain(t, src, quiet)
	writeTree(t, base, map[string]string{".worktrees/aaa/kustomization.yaml": "old tree, no longer served"})
	noSignal(t, src, quiet, "write in the old tree")
	writeTree(t, base, map[string]string{".worktrees/bbb/base/kustomization.yaml": "resources: []\n"})
	waitSignal(t, src, "write in the new tree")
}

func TestRunCoalescesBurst(t *testing.T) {
	root := t.TempDir()
	src := newSource(t, dir.Options{Path: root}) // the default Debounce, 500ms
	start(t, src)

	// Look for a signal between writes too: the channel alone would also
	// coalesce a burst that ends before anyone reads it.
	early := 0
	for i := range 50 {
		writeTree(t, root, map[string]string{fmt.Sprintf("f%02d.yaml", i%10): strings.Repeat("x", i)})
		select {
		case <-src.Changed():
			early++
		default:
		}
	}
	if early != 0 {
		t.Errorf("%d signals during the burst, want none before it settles", early)
	}
	waitSignal(t, src, "50 writes")
	noSignal(t, src, 2*time.Second, "the signal for 50 writes")
}

func TestRunSignalsTreeThatNeverSettles(t *testing.T) {
	const debounce = 200 * time.Millisecond
	root := t.TempDir()
	src := newSource(t, dir.Options{Path: root, Debounce: debounce})
	start(t, src)

	// Writes ten times closer together than debounce: only the bound of
	// ten periods lets a signal through while they go on.
	ticker := time.NewTicker(debounce / 10)
	defer ticker.Stop()
	deadline := time.NewTimer(signalTimeout)
	defer deadline.Stop()
	for i := 0; ; i++ {
		select {
		case <-src.Changed():
			return
		case <-deadline.C:
			t.Fatalf("no signal within %v of continuous writes", signalTimeout)
		case <-ticker.C:
			writeTree(t, root, map[string]string{"log.yaml": fmt.Sprint(i)})
		}
	}
}

func TestRunReturnsOnCancel(t *testing.T) {
	src := newSource(t, dir.Options{Path: t.TempDir()})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	waitSignal(t, src, "Run started")

	if err := src.Run(ctx); err == nil {
		t.Error("second concurrent Run succeeded, want error")
	}

	cancel()
	timer := time.NewTimer(signalTimeout)
	defer timer.Stop()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v after cancel, want nil", err)
		}
	case <-timer.C:
		t.Fatalf("Run did not return within %v of cancel", signalTimeout)
	}
}

func TestRunFailsWhenPathIsGone(t *testing.T) {
	root := filepath.Join(t.TempDir(), "tree")
	writeTree(t, root, map[string]string{"a.yaml": "a"})
	src := newSource(t, dir.Options{Path: root})
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}

	err := src.Run(t.Context())
	if err == nil || !containsPath(err, root) {
		t.Errorf("Run = %v, want an error naming %s", err, root)
	}
}
