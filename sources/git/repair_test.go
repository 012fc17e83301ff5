package git

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/memory"
	"github.com/google/go-cmp/cmp"
)

// records collects the log records of a Source, decoded.
type records struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (r *records) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.Write(p)
}

// named returns the records with message msg, as key/value maps.
func (r *records) named(t *testing.T, msg string) []map[string]any {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(r.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	r.buf.Reset()
	return out
}

// restartable is an upstream repository and a cache that Sources are
// started on, one per "process".
type restartable struct {
	f     *fixture
	opts  Options
	files map[string]string // the commit's files, from the upstream work tree
}

// newRestartable serves a repository of a few files in directories, with
// an executable and a symlink, and fetches it once into a cache.
func newRestartable(t *testing.T, opts Options, gitConfig ...string) (*restartable, Snapshot) {
	t.Helper()
	f := newFixture(t, Options{}, gitConfig...)
	for i := range 5 {
		f.up.write(fmt.Sprintf("base/cm-%d.yaml", i), fmt.Sprintf("kind: ConfigMap\nname: cm-%d\n%s", i, strings.Repeat("data: x\n", 50+i)), 0o644)
	}
	f.up.write("base/kustomization.yaml", "resources: [cm-0.yaml]\n", 0o644)
	f.up.write("hack/run.sh", "#!/bin/sh\n", 0o755)
	f.up.symlink("link.yaml", "app.yaml")
	h := f.up.commit("layout")
	opts.URL, opts.CacheDir = f.srv.RepoURL("repo.git"), f.src.cacheDir
	if opts.Ref == "commit:" {
		opts.Ref += h.String()
	}
	r := &restartable{f: f, opts: opts, files: readTree(t, f.up.dir)}
	for name := range r.files {
		if name == ".git" || strings.HasPrefix(name, ".git/") {
			delete(r.files, name)
		}
	}
	src, _ := r.start(t)
	snap, err := src.Fetch(t.Context())
	if err != nil {
		t.Fatalf("first Fetch: %v", err)
	}
	if diff := cmp.Diff(r.files, readTree(t, snap.Dir)); diff != "" {
		t.Fatalf("first snapshot (-want +got):\n%s", diff)
	}
	return r, snap
}

// start is a restart: a new Source on the same cache, logging into logs
// and counting the snapshots it checks against their commit.
func (r *restartable) start(t *testing.T) (*Source, *records) {
	t.Helper()
	logs := &records{}
	opts := r.opts
	opts.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	src, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return src, logs
}

// countChecks counts src's snapshot checks; Fetch returns after them.
func countChecks(src *Source) *int {
	n := new(int)
	src.onCheck = func(string) { *n++ }
	return n
}

func onePack(t *testing.T, cacheDir, ext string) string {
	t.Helper()
	packs, err := filepath.Glob(filepath.Join(cacheDir, "repo", "objects", "pack", "pack-*."+ext))
	if err != nil || len(packs) != 1 {
		t.Fatalf("cache packs *.%s: %v, %v; want one", ext, packs, err)
	}
	return packs[0]
}

func truncateHalf(t *testing.T, name string) {
	t.Helper()
	info, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(name, info.Size()/2); err != nil {
		t.Fatal(err)
	}
}

// TestFetchRepairsCorruptCache is the restart after a corruption: a new
// Source on the cache returns the commit's files exactly, logs one
// "git cache repaired" naming what, and its next Fetch neither logs nor
// hashes again.
func TestFetchRepairsCorruptCache(t *testing.T) {
	tests := map[string]struct {
		corrupt func(t *testing.T, snapDir, cacheDir string)
		what    string
		reason  string
	}{
		"snapshot file truncated": {
			corrupt: func(t *testing.T, snap, _ string) { truncateHalf(t, filepath.Join(snap, "base", "cm-3.yaml")) },
			what:    "snapshot", reason: "base/cm-3.yaml: ",
		},
		"snapshot file deleted": {
			corrupt: func(t *testing.T, snap, _ string) {
				if err := os.Remove(filepath.Join(snap, "base", "cm-1.yaml")); err != nil {
					t.Fatal(err)
				}
			},
			what: "snapshot", reason: "base/cm-1.yaml: missing",
		},
		"snapshot file added": {
			corrupt: func(t *testing.T, snap, _ string) {
				if err := os.WriteFile(filepath.Join(snap, "base", "extra.yaml"), []byte("kind: Secret\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			what: "snapshot", reason: "base/extra.yaml: not in the commit",
		},
		"snapshot file made executable": {
			corrupt: func(t *testing.T, snap, _ string) {
				if err := os.Chmod(filepath.Join(snap, "base", "cm-2.yaml"), 0o755); err != nil {
					t.Fatal(err)
				}
			},
			what: "snapshot", reason: "base/cm-2.yaml: mode",
		},
		"snapshot symlink replaced": {
			corrupt: func(t *testing.T, snap, _ string) {
				p := filepath.Join(snap, "link.yaml")
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink("base/cm-0.yaml", p); err != nil {
					t.Fatal(err)
				}
			},
			what: "snapshot", reason: "link.yaml: symlink target differs",
		},
		"pack truncated": {
			corrupt: func(t *testing.T, _, cache string) { truncateHalf(t, onePack(t, cache, "pack")) },
			what:    "clone", reason: "checksum mismatch",
		},
		"index truncated": {
			corrupt: func(t *testing.T, _, cache string) { truncateHalf(t, onePack(t, cache, "idx")) },
			what:    "clone", reason: ".idx: ",
		},
		"pack deleted, index left": {
			corrupt: func(t *testing.T, _, cache string) {
				if err := os.Remove(onePack(t, cache, "pack")); err != nil {
					t.Fatal(err)
				}
			},
			what: "clone", reason: "object not found",
		},
		"pack truncated and snapshot file truncated": {
			corrupt: func(t *testing.T, snap, cache string) {
				truncateHalf(t, onePack(t, cache, "pack"))
				truncateHalf(t, filepath.Join(snap, "base", "cm-0.yaml"))
			},
			what: "clone and snapshot", reason: "checksum mismatch",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r, first := newRestartable(t, Options{})
			tc.corrupt(t, first.Dir, r.opts.CacheDir)
			src, logs := r.start(t)
			checks := countChecks(src)

			snap, err := src.Fetch(t.Context())

			if err != nil {
				t.Fatalf("Fetch after the restart: %v", err)
			}
			if diff := cmp.Diff(first, snap); diff != "" {
				t.Errorf("snapshot (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(r.files, readTree(t, snap.Dir)); diff != "" {
				t.Errorf("snapshot files (-commit +got):\n%s", diff)
			}
			repaired := logs.named(t, "git cache repaired")
			if len(repaired) != 1 {
				t.Fatalf("%d records \"git cache repaired\", want 1: %v", len(repaired), repaired)
			}
			rec := repaired[0]
			if rec["level"] != "WARN" || rec["what"] != tc.what || rec["commit"] != filepath.Base(snap.Dir) ||
				!strings.Contains(fmt.Sprint(rec["reason"]), tc.reason) || rec["source"] == nil {
				t.Errorf("record %v, want WARN, what %q, commit %s, a reason with %q and the source", rec, tc.what, filepath.Base(snap.Dir), tc.reason)
			}
			if *checks != 1 {
				t.Errorf("the snapshot was checked %d times, want once", *checks)
			}

			*checks = 0
			again, err := src.Fetch(t.Context())
			if err != nil || again != snap {
				t.Fatalf("second Fetch = %v, %v; want %v", again, err, snap)
			}
			if n := len(logs.named(t, "git cache repaired")); n != 0 || *checks != 0 {
				t.Errorf("second Fetch logged %d repairs and checked the snapshot %d times, want none", n, *checks)
			}
		})
	}
}

// fileIDs is each entry of dir by inode and modification time, which a
// snapshot written again changes.
func fileIDs(t *testing.T, dir string) map[string]string {
	t.Helper()
	ids := map[string]string{}
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		ids[p] = fmt.Sprintf("inode %d", st.Ino)
		if !info.IsDir() {
			ids[p] += " mtime " + info.ModTime().Format(time.RFC3339Nano)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func TestFetchKeepsIntactSnapshotOnRestart(t *testing.T) {
	r, first := newRestartable(t, Options{})
	before := fileIDs(t, first.Dir)
	pack := fileIDs(t, filepath.Join(r.opts.CacheDir, "repo", "objects", "pack"))
	r.f.srv.Counts()
	src, logs := r.start(t)
	checks := countChecks(src)

	snap, err := src.Fetch(t.Context())

	if err != nil || snap != first {
		t.Fatalf("Fetch after the restart = %v, %v; want %v", snap, err, first)
	}
	if diff := cmp.Diff(before, fileIDs(t, snap.Dir)); diff != "" {
		t.Errorf("intact snapshot was written again (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(pack, fileIDs(t, filepath.Join(r.opts.CacheDir, "repo", "objects", "pack"))); diff != "" {
		t.Errorf("intact clone was fetched again (-before +after):\n%s", diff)
	}
	if n := len(logs.named(t, "git cache repaired")); n != 0 {
		t.Errorf("%d records \"git cache repaired\" for an intact cache", n)
	}
	if *checks != 1 {
		t.Errorf("the snapshot was checked %d times after the restart, want once", *checks)
	}
	lsRemote, fetches := r.f.srv.Counts()
	if fetches != 0 {
		t.Errorf("%d fetches (and %d ls-remote) for an intact cache, want none", fetches, lsRemote)
	}
}

// TestFetchRepairNeedsServer: a corrupt clone cannot be repaired while the
// server is down, and no snapshot is handed out meanwhile; once the server
// is back the next Fetch repairs it. The Ref is a commit, so that the
// published snapshot needs no ls-remote and only the repair needs the
// network.
func TestFetchRepairNeedsServer(t *testing.T) {
	r, first := newRestartable(t, Options{Ref: "commit:"}, allowAnySHA...)
	truncateHalf(t, onePack(t, r.opts.CacheDir, "pack"))
	r.f.srv.Down(true)
	src, logs := r.start(t)

	snap, err := src.Fetch(t.Context())

	if err == nil {
		t.Fatalf("Fetch with a corrupt clone and the server down = %v, want an error", snap)
	}
	if snap != (Snapshot{}) {
		t.Errorf("failed Fetch returned the snapshot %v", snap)
	}
	for _, want := range []string{r.opts.URL, ": fetch: ", "repairing the cache clone", "checksum mismatch"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if n := len(logs.named(t, "git cache repaired")); n != 0 {
		t.Errorf("%d records \"git cache repaired\" for a failed repair", n)
	}

	r.f.srv.Down(false)
	snap, err = src.Fetch(t.Context())

	if err != nil || snap != first {
		t.Fatalf("Fetch with the server back = %v, %v; want %v", snap, err, first)
	}
	if diff := cmp.Diff(r.files, readTree(t, snap.Dir)); diff != "" {
		t.Errorf("snapshot files (-commit +got):\n%s", diff)
	}
	if n := len(logs.named(t, "git cache repaired")); n != 1 {
		t.Errorf("%d records \"git cache repaired\" once the server is back, want 1", n)
	}
}

// TestFetchRepairsCloneCorruptedWhileRunning: a pack truncated under a
// running Source (whose clone was checked at its first Fetch) fails the
// checkout of the next commit, which re-clones within that Fetch.
func TestFetchRepairsCloneCorruptedWhileRunning(t *testing.T) {
	r, _ := newRestartable(t, Options{})
	src, logs := r.start(t)
	if _, err := src.Fetch(t.Context()); err != nil {
		t.Fatal(err)
	}
	truncateHalf(t, onePack(t, r.opts.CacheDir, "pack"))
	h := r.f.up.commitFile("base/cm-9.yaml", "kind: ConfigMap\nname: cm-9\n")
	want := readTree(t, r.f.up.dir)
	for name := range want {
		if name == ".git" || strings.HasPrefix(name, ".git/") {
			delete(want, name)
		}
	}
	logs.named(t, "")

	snap, err := src.Fetch(t.Context())

	if err != nil {
		t.Fatalf("Fetch of a new commit into a truncated clone: %v", err)
	}
	if snap.Revision != revision("main", h) {
		t.Errorf("revision %q, want %q", snap.Revision, revision("main", h))
	}
	if diff := cmp.Diff(want, readTree(t, snap.Dir)); diff != "" {
		t.Errorf("snapshot files (-commit +got):\n%s", diff)
	}
	repaired := logs.named(t, "git cache repaired")
	if len(repaired) != 1 || repaired[0]["what"] != "clone" || !strings.Contains(fmt.Sprint(repaired[0]["reason"]), "checkout: ") {
		t.Errorf("records \"git cache repaired\" %v, want one for the clone", repaired)
	}
}

// swappedStorer answers for blob from with the object of blob to: a clone
// whose pack holds other bytes than its index says.
type swappedStorer struct {
	*memory.Storage
	from, to plumbing.Hash
}

func (s swappedStorer) EncodedObject(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	if h == s.from {
		h = s.to
	}
	return s.Storage.EncodedObject(t, h)
}

func TestWriteTreeChecksBlobs(t *testing.T) {
	b := treeBuilder{t, memory.NewStorage()}
	for name, to := range map[string]string{"other bytes": "data?\n", "fewer bytes": "dat"} {
		t.Run(name, func(t *testing.T) {
			want := b.blob("data\n")
			st := swappedStorer{b.st, want, b.blob(to)}
			tree, err := object.GetTree(b.st, b.tree(object.TreeEntry{Name: "a.yaml", Mode: filemode.Regular, Hash: want}))
			if err != nil {
				t.Fatal(err)
			}
			root, err := os.OpenRoot(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()

			err = writeTree(t.Context(), root, st, &snapshotBudget{}, tree, ".", 0)

			if ce := (*cloneError)(nil); !errors.As(err, &ce) || !strings.Contains(err.Error(), "a.yaml: blob "+want.String()) {
				t.Errorf("writeTree of a blob that is not what its hash says = %v, want a cloneError naming a.yaml and the blob", err)
			}
		})
	}
}

// BenchmarkCheckSnapshot measures what a restart adds to the first Fetch
// of a published snapshot of 1,000 manifests of about 1.5 KiB in 20
// directories: the snapshot compared with its commit (every file hashed),
// and the clone's packs checked against their checksums.
func BenchmarkCheckSnapshot(b *testing.B) {
	up := b.TempDir()
	repo, err := gogit.PlainInit(up, false)
	if err != nil {
		b.Fatal(err)
	}
	for i := range 1000 {
		p := filepath.Join(up, fmt.Sprintf("app-%02d", i%20), fmt.Sprintf("cm-%04d.yaml", i))
		os.MkdirAll(filepath.Dir(p), 0o755)
		body := fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-%04d\ndata:\n", i)
		for len(body) < 1500 {
			body += fmt.Sprintf("  key-%d: value %d %d\n", len(body), i, len(body))
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	w, _ := repo.Worktree()
	if err := w.AddWithOptions(&gogit.AddOptions{All: true}); err != nil {
		b.Fatal(err)
	}
	sig := &object.Signature{Name: "Test", Email: "test@example.com", When: time.Now()}
	h, err := w.Commit("1,000 files", &gogit.CommitOptions{Author: sig})
	if err != nil {
		b.Fatal(err)
	}
	src, err := New(Options{URL: up, Ref: "commit:" + h.String(), CacheDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	snap, err := src.Fetch(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	clone, err := src.openRepo()
	if err != nil {
		b.Fatal(err)
	}
	commit, err := clone.CommitObject(h)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("snapshot", func(b *testing.B) {
		for b.Loop() {
			tree, err := (&snapshotBudget{}).tree(clone.Storer, commit.TreeHash)
			if err == nil {
				err = src.checkSnapshot(b.Context(), snap.Dir, clone.Storer, tree)
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("packs", func(b *testing.B) {
		for b.Loop() {
			if err := checkPacks(src.repoDir()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("restart Fetch", func(b *testing.B) {
		for b.Loop() {
			src.checked, src.cloneChecked = map[plumbing.Hash]bool{}, false
			if _, err := src.Fetch(b.Context()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("resync Fetch", func(b *testing.B) {
		for b.Loop() {
			if _, err := src.Fetch(b.Context()); err != nil {
				b.Fatal(err)
			}
		}
	})
}
