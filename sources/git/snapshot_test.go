package git

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/memory"
	"github.com/google/go-cmp/cmp"
)

// treeBuilder stores hand-made trees, including ones git would never write.
type treeBuilder struct {
	t  *testing.T
	st *memory.Storage
}

func (b treeBuilder) blob(content string) plumbing.Hash {
	b.t.Helper()
	obj := b.st.NewEncodedObject()
	obj.SetType(plumbing.BlobObject)
	w, _ := obj.Writer()
	w.Write([]byte(content))
	w.Close()
	h, err := b.st.SetEncodedObject(obj)
	if err != nil {
		b.t.Fatal(err)
	}
	return h
}

func (b treeBuilder) tree(entries ...object.TreeEntry) plumbing.Hash {
	b.t.Helper()
	sort.Stable(object.TreeEntrySorter(entries))
	obj := b.st.NewEncodedObject()
	if err := (&object.Tree{Entries: entries}).Encode(obj); err != nil {
		b.t.Fatal(err)
	}
	h, err := b.st.SetEncodedObject(obj)
	if err != nil {
		b.t.Fatal(err)
	}
	return h
}

func TestWriteTree(t *testing.T) {
	b := treeBuilder{t, memory.NewStorage()}
	file := b.blob("data\n")
	entry := func(name string, mode filemode.FileMode, h plumbing.Hash) object.TreeEntry {
		return object.TreeEntry{Name: name, Mode: mode, Hash: h}
	}
	tests := map[string]struct {
		tree      plumbing.Hash
		want      map[string]string
		wantErr   string
		noOutside bool
	}{
		"files, modes, links, submodule": {
			tree: b.tree(
				entry("a.yaml", filemode.Regular, file),
				entry("old", filemode.Deprecated, file),
				entry("run", filemode.Executable, file),
				entry("abs", filemode.Symlink, b.blob("/etc/passwd")), // kept verbatim: kustomize rejects it
				entry("sub", filemode.Dir, b.tree(entry("b", filemode.Regular, file))),
				entry("vendor", filemode.Submodule, plumbing.NewHash(strings.Repeat("1", 40))),
			),
			want: map[string]string{
				"a.yaml": "file data\n", "old": "file data\n", "run": "exec data\n",
				"abs": "link -> /etc/passwd", "sub": "dir", "sub/b": "file data\n", "vendor": "dir",
			},
		},
		"dot-dot name":      {tree: b.tree(entry("..", filemode.Regular, file)), wantErr: "invalid tree entry name"},
		"slash in name":     {tree: b.tree(entry("x/../../y", filemode.Regular, file)), wantErr: "invalid tree entry name"},
		".git directory":    {tree: b.tree(entry(".git", filemode.Dir, b.tree(entry("config", filemode.Regular, file)))), wantErr: "refusing to write a .git entry"},
		".GIT any case":     {tree: b.tree(entry(".GIT", filemode.Regular, file)), wantErr: "refusing"},
		"missing subtree":   {tree: b.tree(entry("gone", filemode.Dir, plumbing.NewHash(strings.Repeat("2", 40)))), wantErr: "gone: object not found"},
		"missing blob":      {tree: b.tree(entry("gone", filemode.Regular, plumbing.NewHash(strings.Repeat("3", 40)))), wantErr: "gone: object not found"},
		"oversized symlink": {tree: b.tree(entry("l", filemode.Symlink, b.blob(strings.Repeat("a", maxSymlinkTarget+1)))), wantErr: "symlink target longer"},
		"write through link": {
			// A symlink to outside, then a directory of the same name: git
			// never writes such a tree, and os.Root stops it if one does.
			tree: b.tree(
				entry("evil", filemode.Symlink, b.blob("../outside")),
				entry("evil", filemode.Dir, b.tree(entry("passwd", filemode.Regular, file))),
			),
			wantErr:   "evil",
			noOutside: true,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "snap")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(filepath.Join(parent, "outside"), 0o755); err != nil {
				t.Fatal(err)
			}
			root, err := os.OpenRoot(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			tree, err := object.GetTree(b.st, tc.tree)
			if err != nil {
				t.Fatal(err)
			}

			err = writeTree(t.Context(), root, b.st, &snapshotBudget{}, tree, ".", 0)

			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("writeTree error = %v, want one containing %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatalf("writeTree: %v", err)
			}
			if tc.want != nil {
				if diff := cmp.Diff(tc.want, readTree(t, dir)); diff != "" {
					t.Errorf("written tree (-want +got):\n%s", diff)
				}
			}
			if outside := readTree(t, filepath.Join(parent, "outside")); len(outside) != 0 {
				t.Errorf("wrote outside the snapshot: %v", outside)
			}
		})
	}
}

func TestWriteTreeStopsOnCancel(t *testing.T) {
	b := treeBuilder{t, memory.NewStorage()}
	tree, err := object.GetTree(b.st, b.tree(object.TreeEntry{Name: "a", Mode: filemode.Regular, Hash: b.blob("x")}))
	if err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := writeTree(ctx, root, b.st, &snapshotBudget{}, tree, ".", 0); err != context.Canceled {
		t.Errorf("writeTree with a cancelled ctx = %v, want context.Canceled", err)
	}
}

func TestClean(t *testing.T) {
	sha := func(c string) string { return strings.Repeat(c, 40) }
	// Snapshots oldest first; "a" is current although it is the oldest.
	all := []string{sha("a"), sha("b"), sha("c"), sha("d")}
	tests := map[string]struct {
		keep int
		want []string
	}{
		"keep none":         {keep: 0, want: []string{sha("a")}},
		"keep one":          {keep: 1, want: []string{sha("a"), sha("d")}},
		"keep two":          {keep: 2, want: []string{sha("a"), sha("c"), sha("d")}},
		"keep more than is": {keep: 9, want: all},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := &Source{cacheDir: t.TempDir(), keep: tc.keep, log: slog.New(slog.DiscardHandler)}
			base := time.Now().Add(-time.Hour)
			for i, name := range append(all, ".tmp-left-over") {
				dir := filepath.Join(s.snapshotsDir(), name)
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				mod := base.Add(time.Duration(i) * time.Minute)
				if err := os.Chtimes(dir, mod, mod); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(s.snapshotsDir(), "stray-file"), nil, 0o644); err != nil {
				t.Fatal(err)
			}

			s.clean(plumbing.NewHash(sha("a")))

			entries, err := os.ReadDir(s.snapshotsDir())
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range entries {
				got = append(got, e.Name())
			}
			want := append(tc.want, "stray-file") // not ours: left alone
			sort.Strings(want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("snapshots after clean (-want +got):\n%s", diff)
			}
		})
	}
}
