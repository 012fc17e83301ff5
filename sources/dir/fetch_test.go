package dir_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gitopsd/gitopsd/sources/dir"
)

// smallTree is a kustomize tree with a symlink, an executable and git
// metadata.
var smallTree = map[string]string{
	"kustomization.yaml":      "resources:\n- base\n",
	"base/kustomization.yaml": "resources:\n- statefulset.yaml\n",
	"base/statefulset.yaml":   "kind: StatefulSet\n",
	"base/latest.yaml":        "->statefulset.yaml",
	"hack/check.sh":           "#!/bin/sh\n",
	"empty/":                  "",
	".git/HEAD":               "ref: refs/heads/main\n",
}

// newSmallTree writes smallTree with fixed modes, whatever the umask.
func newSmallTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	writeTree(t, root, smallTree)
	modes := map[string]os.FileMode{
		"kustomization.yaml":      0o644,
		"base":                    0o755,
		"base/kustomization.yaml": 0o644,
		"base/statefulset.yaml":   0o644,
		"hack":                    0o755,
		"hack/check.sh":           0o755,
		"empty":                   0o755,
	}
	for name, mode := range modes {
		if err := os.Chmod(filepath.Join(root, name), mode); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestFetchSnapshot(t *testing.T) {
	root := newSmallTree(t)
	src := newSource(t, dir.Options{Path: root})

	got := fetch(t, src)

	// The revision is pinned: a change to the hash format changes every
	// revision a cluster has been annotated with. It is the sha256 of one
	// record per entry but the root and .git, in lexical order, each
	// "kind NUL octal-mode NUL relative-path NUL value NUL", where kind is
	// d, f, l or o, and value is the file's hex sha256, the link's target
	// (with mode 0), or empty.
	want := dir.Snapshot{
		Dir:      resolved(t, root),
		Revision: "sha256:8fa1256a72b678a07f1a9119fcb4e2f839265bdbf04bd066cb7485dc6f93d1e8",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Fetch() mismatch (-want +got):\n%s", diff)
	}
}

func TestFetchRevisionIgnoresLocation(t *testing.T) {
	a, b := newSmallTree(t), newSmallTree(t)
	got := fetch(t, newSource(t, dir.Options{Path: b})).Revision
	want := fetch(t, newSource(t, dir.Options{Path: a})).Revision
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("revision of the same tree elsewhere (-want +got):\n%s", diff)
	}
}

func TestFetchRevision(t *testing.T) {
	write := func(name, content string) func(*testing.T, string) {
		return func(t *testing.T, root string) {
			t.Helper()
			writeTree(t, root, map[string]string{name: content})
		}
	}
	tests := map[string]struct {
		change func(t *testing.T, root string)
		same   bool
	}{
		"nothing": {change: func(*testing.T, string) {}, same: true},
		"touch": {same: true, change: func(t *testing.T, root string) {
			later := time.Now().Add(time.Hour)
			if err := os.Chtimes(filepath.Join(root, "base/statefulset.yaml"), later, later); err != nil {
				t.Fatal(err)
			}
		}},
		"rewrite same content": {same: true, change: write("base/statefulset.yaml", "kind: StatefulSet\n")},
		"git metadata":         {same: true, change: write(".git/ORIG_HEAD", "abc\n")},
		"worktree .git file": {same: true, change: func(t *testing.T, root string) {
			if err := os.RemoveAll(filepath.Join(root, ".git")); err != nil {
				t.Fatal(err)
			}
			writeTree(t, root, map[string]string{".git": "gitdir: /git/.git/worktrees/abc\n"})
		}},
		"edit":          {change: write("base/statefulset.yaml", "kind: StatefulSet\nspec: {}\n")},
		"add file":      {change: write("base/service.yaml", "kind: Service\n")},
		"add empty dir": {change: write("more/", "")},
		"retarget link": {change: func(t *testing.T, root string) {
			replaceLink(t, filepath.Join(root, "base/latest.yaml"), "kustomization.yaml")
		}},
		"chmod":       {change: chmod("base/statefulset.yaml", 0o600)},
		"chmod +x":    {change: chmod("kustomization.yaml", 0o755)},
		"chmod dir":   {change: chmod("empty", 0o700)},
		"remove file": {change: remove("hack/check.sh")},
		"remove dir":  {change: remove("empty")},
		"rename file": {change: func(t *testing.T, root string) {
			if err := os.Rename(filepath.Join(root, "hack/check.sh"), filepath.Join(root, "hack/lint.sh")); err != nil {
				t.Fatal(err)
			}
		}},
		"move content between files": {change: func(t *testing.T, root string) {
			// Same bytes overall, split differently: framing must tell.
			writeTree(t, root, map[string]string{
				"base/kustomization.yaml": "resources:\n- statefulset.yaml\nkind: StatefulSet\n",
				"base/statefulset.yaml":   "",
			})
		}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			root := newSmallTree(t)
			src := newSource(t, dir.Options{Path: root})
			before := fetch(t, src).Revision
			tc.change(t, root)
			after := fetch(t, src).Revision
			if got := before == after; got != tc.same {
				t.Errorf("revision before %s, after %s: same = %v, want %v", before, after, got, tc.same)
			}
		})
	}
}

func chmod(name string, mode os.FileMode) func(*testing.T, string) {
	return func(t *testing.T, root string) {
		t.Helper()
		if err := os.Chmod(filepath.Join(root, name), mode); err != nil {
			t.Fatal(err)
		}
	}
}

func remove(name string) func(*testing.T, string) {
	return func(t *testing.T, root string) {
		t.Helper()
		if err := os.RemoveAll(filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
}

// replaceLink points the symlink at link to target atomically, as
// git-sync does: a new link renamed over the old one.
func replaceLink(t *testing.T, link, target string) {
	t.Helper()
	tmp := link + ".tmp"
	if err := os.Symlink(target, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil {
		t.Fatal(err)
	}
}

func TestFetchDoesNotFollowLinksOutOfTree(t *testing.T) {
	outside := t.TempDir()
	writeTree(t, outside, map[string]string{"secret.yaml": "a"})
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		"kustomization.yaml": "resources: []\n",
		"escape":             "->" + outside,
		"escape.yaml":        "->" + filepath.Join(outside, "secret.yaml"),
		"dotdot":             "->../../..",
	})
	src := newSource(t, dir.Options{Path: root})
	before := fetch(t, src).Revision

	writeTree(t, outside, map[string]string{"secret.yaml": "b", "more.yaml": "c"})

	if got := fetch(t, src).Revision; got != before {
		t.Errorf("revision changed from %s to %s with content outside the tree", before, got)
	}
}

func TestFetchResolvesSymlinkPath(t *testing.T) {
	base := t.TempDir()
	writeTree(t, base, map[string]string{
		".worktrees/a/kustomization.yaml": "a",
		".worktrees/b/kustomization.yaml": "b",
		"current":                         "->.worktrees/a",
	})
	src := newSource(t, dir.Options{Path: filepath.Join(base, "current")})
	first := fetch(t, src)

	replaceLink(t, filepath.Join(base, "current"), ".worktrees/b")
	second := fetch(t, src)

	if diff := cmp.Diff(resolved(t, filepath.Join(base, ".worktrees/a")), first.Dir); diff != "" {
		t.Errorf("first Dir (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(resolved(t, filepath.Join(base, ".worktrees/b")), second.Dir); diff != "" {
		t.Errorf("Dir after swap (-want +got):\n%s", diff)
	}
	if first.Revision == second.Revision {
		t.Errorf("revision %s unchanged by swap to different content", first.Revision)
	}
}

func TestFetchLimits(t *testing.T) {
	// Four entries (three files and a directory) and 30 bytes, plus .git,
	// which counts toward neither limit.
	tree := map[string]string{
		"a.yaml":     "0123456789",
		"b.yaml":     "0123456789",
		"sub/c.yaml": "0123456789",
		".git/big":   strings.Repeat("x", 1000),
	}
	tests := map[string]struct {
		maxFiles int
		maxBytes int64
		wantErr  string // "" for success
	}{
		"defaults":       {},
		"at the limits":  {maxFiles: 4, maxBytes: 30},
		"too many files": {maxFiles: 3, maxBytes: 30, wantErr: "more than 3 files"},
		"too many bytes": {maxFiles: 4, maxBytes: 29, wantErr: "more than 29 bytes"},
		"one file":       {maxFiles: 4, maxBytes: 9, wantErr: "more than 9 bytes (MaxBytes) at a.yaml"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, tree)
			src := newSource(t, dir.Options{Path: root, MaxFiles: tc.maxFiles, MaxBytes: tc.maxBytes})
			_, err := src.Fetch(t.Context())
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Fetch: %v", err)
			case tc.wantErr == "":
			case err == nil:
				t.Fatalf("Fetch succeeded, want error %q", tc.wantErr)
			case !containsPath(err, root) || !strings.Contains(err.Error(), tc.wantErr):
				t.Errorf("Fetch error = %q, want one naming %s and saying %q", err, root, tc.wantErr)
			}
		})
	}
}

func TestFetchErrors(t *testing.T) {
	t.Run("path removed", func(t *testing.T) {
		root := filepath.Join(t.TempDir(), "tree")
		writeTree(t, root, map[string]string{"a.yaml": "a"})
		src := newSource(t, dir.Options{Path: root})
		if err := os.RemoveAll(root); err != nil {
			t.Fatal(err)
		}
		_, err := src.Fetch(t.Context())
		if err == nil || !containsPath(err, root) || !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Fetch error = %v, want one naming %s that is os.ErrNotExist", err, root)
		}
	})
	t.Run("context cancelled", func(t *testing.T) {
		root := t.TempDir()
		writeTree(t, root, map[string]string{"a.yaml": "a"})
		src := newSource(t, dir.Options{Path: root})
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := src.Fetch(ctx)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Fetch error = %v, want context.Canceled", err)
		}
	})
}

// ignoreTree is a tree whose .gitignore files ignore a build directory,
// logs, a nested secret and everything but one file of config.
var ignoreTree = map[string]string{
	".gitignore":              "# build output\n/build/\n*.log\nconfig/**\n!config/prod.yaml\n",
	"kustomization.yaml":      "resources:\n- base\n",
	"app.log":                 "started\n",
	"build/out.yaml":          "kind: List\n",
	"build/deep/out.yaml":     "kind: List\n",
	"config/prod.yaml":        "replicas: 3\n",
	"config/dev.yaml":         "replicas: 1\n",
	"config/sub/x.yaml":       "x\n",
	"base/.gitignore":         "secret.env\n!debug.log\n",
	"base/kustomization.yaml": "resources: []\n",
	"base/secret.env":         "TOKEN=a\n",
	"base/debug.log":          "debug\n",
	"secret.env":              "TOKEN=a\n",
}

func TestFetchIgnored(t *testing.T) {
	write := func(name, content string) func(*testing.T, string) {
		return func(t *testing.T, root string) {
			t.Helper()
			writeTree(t, root, map[string]string{name: content})
		}
	}
	tests := map[string]struct {
		change func(t *testing.T, root string)
		same   bool
	}{
		"edit ignored file":             {same: true, change: write("app.log", "stopped\n")},
		"add ignored file":              {same: true, change: write("base/more.log", "x\n")},
		"edit in ignored directory":     {same: true, change: write("build/out.yaml", "kind: Other\n")},
		"add in ignored directory":      {same: true, change: write("build/new/a.yaml", "a\n")},
		"remove ignored directory":      {same: true, change: remove("build")},
		"chmod ignored file":            {same: true, change: chmod("app.log", 0o600)},
		"edit ignored by nested file":   {same: true, change: write("base/secret.env", "TOKEN=b\n")},
		"edit contents-only ignored":    {same: true, change: write("config/dev.yaml", "replicas: 2\n")},
		"edit below contents-only":      {same: true, change: write("config/sub/x.yaml", "y\n")},
		"edit re-included file":         {change: write("config/prod.yaml", "replicas: 4\n")},
		"edit re-included by nested":    {change: write("base/debug.log", "more\n")},
		"edit outside nested scope":     {change: write("secret.env", "TOKEN=b\n")},
		"edit .gitignore":               {change: write(".gitignore", "/build/\n")},
		"edit nested .gitignore":        {change: write("base/.gitignore", "secret.env\n")},
		"add file":                      {change: write("base/service.yaml", "kind: Service\n")},
		"edit file":                     {change: write("kustomization.yaml", "resources: []\n")},
		"add nested build not anchored": {change: write("base/build/a.yaml", "a\n")},
		// /build/ matches directories only.
		"file in place of ignored dir": {change: func(t *testing.T, root string) {
			remove("build")(t, root)
			write("build", "x")(t, root)
		}},
		"add .gitignore ignoring a file": {change: write("base/.gitignore", "secret.env\n!debug.log\nkustomization.yaml\n")},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, ignoreTree)
			src := newSource(t, dir.Options{Path: root})
			before := fetch(t, src).Revision
			tc.change(t, root)
			after := fetch(t, src).Revision
			if got := before == after; got != tc.same {
				t.Errorf("revision before %s, after %s: same = %v, want %v", before, after, got, tc.same)
			}
			// Whatever the cache holds, a new Source must agree.
			if fresh := fetch(t, newSource(t, dir.Options{Path: root})).Revision; fresh != after {
				t.Errorf("revision %s, but %s from a new Source", after, fresh)
			}
		})
	}
}

func TestFetchIgnoredIsNotWalked(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		".gitignore":         "/data/\n*.bin\n",
		"kustomization.yaml": "resources: []\n",
	})
	// More entries than MaxFiles in an ignored directory: a walk of it
	// fails.
	for i := range 50 {
		writeTree(t, root, map[string]string{fmt.Sprintf("data/part%02d/x.yaml", i): "x"})
	}
	// A 100 MiB ignored file, sparse so that it costs no disk: reading it
	// fails.
	big, err := os.Create(filepath.Join(root, "model.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if err := big.Truncate(100 << 20); err != nil {
		t.Fatal(err)
	}
	if err := big.Close(); err != nil {
		t.Fatal(err)
	}
	// An unreadable ignored directory: listing it fails, but for root.
	writeTree(t, root, map[string]string{"data/locked/x.yaml": "x"})
	if err := os.Chmod(filepath.Join(root, "data/locked"), 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(filepath.Join(root, "data/locked"), 0o755) })

	src := newSource(t, dir.Options{Path: root, MaxFiles: 10, MaxBytes: 1 << 20})
	got := fetch(t, src).Revision

	want := fetch(t, newSource(t, dir.Options{Path: withTree(t, map[string]string{
		".gitignore":         "/data/\n*.bin\n",
		"kustomization.yaml": "resources: []\n",
	})})).Revision
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("revision with ignored data and model.bin, against the tree without (-want +got):\n%s", diff)
	}

	// Not ignored, the same content exceeds both bounds.
	writeTree(t, root, map[string]string{".gitignore": "*.bin\n"})
	if _, err := src.Fetch(t.Context()); err == nil || !strings.Contains(err.Error(), "more than 10 files (MaxFiles)") {
		t.Errorf("Fetch with data not ignored = %v, want the MaxFiles error", err)
	}
	writeTree(t, root, map[string]string{".gitignore": "/data/\n"})
	if _, err := src.Fetch(t.Context()); err == nil || !strings.Contains(err.Error(), "more than 1048576 bytes (MaxBytes) at model.bin") {
		t.Errorf("Fetch with model.bin not ignored = %v, want the MaxBytes error", err)
	}
}

// TestFetchEditRightAfterFetch edits a file as soon as Fetch has read it,
// keeping its size and its mtime: the next Fetch must see the edit, even
// on a file system whose timestamps are too coarse to tell.
func TestFetchEditRightAfterFetch(t *testing.T) {
	for i := range 20 {
		root := t.TempDir()
		writeTree(t, root, map[string]string{"kustomization.yaml": "resources: [a]\n"})
		name := filepath.Join(root, "kustomization.yaml")
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		src := newSource(t, dir.Options{Path: root})
		before := fetch(t, src).Revision

		writeTree(t, root, map[string]string{"kustomization.yaml": "resources: [b]\n"})
		if err := os.Chtimes(name, fi.ModTime(), fi.ModTime()); err != nil {
			t.Fatal(err)
		}
		if after := fetch(t, src).Revision; after == before {
			t.Fatalf("attempt %d: revision %s unchanged by an edit right after Fetch", i, after)
		}
	}
}

func TestFetchDefaultMaxBytes(t *testing.T) {
	// Past the old default of 64 MiB: a sparse file of 100 MiB.
	root := t.TempDir()
	big, err := os.Create(filepath.Join(root, "big"))
	if err != nil {
		t.Fatal(err)
	}
	if err := big.Truncate(100 << 20); err != nil {
		t.Fatal(err)
	}
	if err := big.Close(); err != nil {
		t.Fatal(err)
	}
	fetch(t, newSource(t, dir.Options{Path: root}))
}

func TestDir(t *testing.T) {
	base := t.TempDir()
	writeTree(t, base, map[string]string{
		"tree/kustomization.yaml": "resources: []\n",
		"current":                 "->tree",
	})
	src := newSource(t, dir.Options{Path: filepath.Join(base, "current")})
	got, err := src.Dir()
	if err != nil {
		t.Fatalf("Dir: %v", err)
	}
	if diff := cmp.Diff(resolved(t, filepath.Join(base, "tree")), got); diff != "" {
		t.Errorf("Dir() (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(fetch(t, src).Dir, got); diff != "" {
		t.Errorf("Dir() against Fetch's Snapshot.Dir (-want +got):\n%s", diff)
	}

	if err := os.Remove(filepath.Join(base, "current")); err != nil {
		t.Fatal(err)
	}
	writeTree(t, base, map[string]string{"current": "x"})
	if _, err := src.Dir(); err == nil || !containsPath(err, filepath.Join(base, "current")) {
		t.Errorf("Dir() of a file = %v, want an error naming the path", err)
	}
	if err := os.Remove(filepath.Join(base, "current")); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Dir(); err == nil || !errors.Is(err, os.ErrNotExist) || !containsPath(err, filepath.Join(base, "current")) {
		t.Errorf("Dir() of a missing path = %v, want os.ErrNotExist naming the path", err)
	}
}
