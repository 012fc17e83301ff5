package dir

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// needCache skips a test of the hash cache where the platform gives no
// stat key, and so no cache.
func needCache(t *testing.T) {
	t.Helper()
	fi, err := os.Stat(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := keyOf(fi); !ok {
		t.Skip("no stat key on this platform: Fetch reads every file")
	}
}

// aged is long enough for a file written before it to be past racyWindow.
const aged = racyWindow + 200*time.Millisecond

// write creates entries under root as the external tests' writeTree does:
// a name ending in "/" is a directory, a content starting with "->" a
// symlink to the rest.
func write(t *testing.T, root string, entries map[string]string) {
	t.Helper()
	for name, content := range entries {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case strings.HasSuffix(name, "/"):
			err = os.MkdirAll(p, 0o755)
		case strings.HasPrefix(content, "->"):
			err = os.Symlink(strings.TrimPrefix(content, "->"), p)
		default:
			err = os.WriteFile(p, []byte(content), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// traced is a Source for root that records what Fetch reads and lists.
type traced struct {
	*Source
	opsMu sync.Mutex
	ops   map[string][]string // by op, in order
}

func newTraced(t *testing.T, root string) *traced {
	t.Helper()
	src, err := New(Options{Path: root})
	if err != nil {
		t.Fatal(err)
	}
	tr := &traced{Source: src}
	src.trace = func(op, name string) {
		tr.opsMu.Lock()
		defer tr.opsMu.Unlock()
		tr.ops[op] = append(tr.ops[op], name)
	}
	return tr
}

// fetch fetches and returns the revision and the files read.
func (tr *traced) fetch(t *testing.T) (revision string, read []string) {
	t.Helper()
	tr.opsMu.Lock()
	tr.ops = map[string][]string{}
	tr.opsMu.Unlock()
	snap, err := tr.Fetch(t.Context())
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	tr.opsMu.Lock()
	defer tr.opsMu.Unlock()
	return snap.Revision, tr.ops["read"]
}

// cached returns the paths whose hashes the source keeps.
func (tr *traced) cached() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return slices.Sorted(maps.Keys(tr.hashes))
}

// revision returns the revision a new Source, with nothing cached, gives
// root.
func revision(t *testing.T, root string) string {
	t.Helper()
	src, err := New(Options{Path: root})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := src.Fetch(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return snap.Revision
}

// cacheTree is the tree of the cache tests.
var cacheTree = map[string]string{
	".gitignore":              "*.log\n/build/\n",
	"kustomization.yaml":      "resources:\n- base\n",
	"base/kustomization.yaml": "resources:\n- app.yaml\n",
	"base/app.yaml":           "kind: Deployment\n",
	"base/link.yaml":          "->app.yaml",
	"app.log":                 "started\n",
	"build/out.yaml":          "kind: List\n",
}

func TestFetchReadsOnlyWhatChanged(t *testing.T) {
	t.Parallel() // it mostly waits for racyWindow
	needCache(t)
	// All four files are hashed; after a change, those read again are too
	// recent to keep.
	all := []string{".gitignore", "base/app.yaml", "base/kustomization.yaml", "kustomization.yaml"}
	allBut := func(names ...string) []string {
		return slices.DeleteFunc(slices.Clone(all), func(n string) bool { return slices.Contains(names, n) })
	}
	tests := map[string]struct {
		change     func(t *testing.T, root string)
		wantRead   []string
		wantCached []string
		same       bool
	}{
		"nothing": {same: true, wantCached: all, change: func(*testing.T, string) {}},
		"edit, same size": {wantRead: []string{"base/app.yaml"}, wantCached: allBut("base/app.yaml"), change: func(t *testing.T, root string) {
			write(t, root, map[string]string{"base/app.yaml": "kind: Daemonsets\n"})
		}},
		// As rsync -t and tar leave a file: new content, old size and mtime.
		"edit, same size and mtime": {wantRead: []string{"base/app.yaml"}, wantCached: allBut("base/app.yaml"), change: func(t *testing.T, root string) {
			name := filepath.Join(root, "base/app.yaml")
			fi, err := os.Stat(name)
			if err != nil {
				t.Fatal(err)
			}
			write(t, root, map[string]string{"base/app.yaml": "kind: Daemonsets\n"})
			if err := os.Chtimes(name, fi.ModTime(), fi.ModTime()); err != nil {
				t.Fatal(err)
			}
		}},
		"renamed over, same content and mtime": {same: true, wantRead: []string{"base/app.yaml"}, wantCached: allBut("base/app.yaml"), change: func(t *testing.T, root string) {
			name := filepath.Join(root, "base/app.yaml")
			fi, err := os.Stat(name)
			if err != nil {
				t.Fatal(err)
			}
			write(t, root, map[string]string{"base/app.yaml.tmp": cacheTree["base/app.yaml"]})
			if err := os.Chtimes(name+".tmp", fi.ModTime(), fi.ModTime()); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(name+".tmp", name); err != nil {
				t.Fatal(err)
			}
		}},
		"touch": {same: true, wantRead: []string{"kustomization.yaml"}, wantCached: allBut("kustomization.yaml"), change: func(t *testing.T, root string) {
			later := time.Now().Add(time.Hour)
			if err := os.Chtimes(filepath.Join(root, "kustomization.yaml"), later, later); err != nil {
				t.Fatal(err)
			}
		}},
		"chmod": {wantRead: []string{"kustomization.yaml"}, wantCached: allBut("kustomization.yaml"), change: func(t *testing.T, root string) {
			if err := os.Chmod(filepath.Join(root, "kustomization.yaml"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		"add file": {wantRead: []string{"base/svc.yaml"}, wantCached: all, change: func(t *testing.T, root string) {
			write(t, root, map[string]string{"base/svc.yaml": "kind: Service\n"})
		}},
		"remove file": {wantCached: allBut("base/app.yaml"), change: func(t *testing.T, root string) {
			if err := os.Remove(filepath.Join(root, "base/app.yaml")); err != nil {
				t.Fatal(err)
			}
		}},
		"edit ignored file": {same: true, wantCached: all, change: func(t *testing.T, root string) {
			write(t, root, map[string]string{"app.log": "stopped\n", "build/out.yaml": "kind: Other\n"})
		}},
		"ignore a file": {wantRead: []string{".gitignore"}, wantCached: allBut(".gitignore", "base/app.yaml"), change: func(t *testing.T, root string) {
			write(t, root, map[string]string{".gitignore": "*.log\n/build/\nbase/app.yaml\n"})
		}},
	}
	// One tree for each case, all left to age past racyWindow at once.
	roots := map[string]string{}
	for name := range tests {
		roots[name] = t.TempDir()
		write(t, roots[name], cacheTree)
	}
	time.Sleep(aged)
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			root := roots[name]
			src := newTraced(t, root)
			before, read := src.fetch(t)
			if diff := cmp.Diff(all, read); diff != "" {
				t.Errorf("files read by the first Fetch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(all, src.cached()); diff != "" {
				t.Errorf("hashes kept after the first Fetch (-want +got):\n%s", diff)
			}
			if _, read := src.fetch(t); len(read) != 0 {
				t.Errorf("second Fetch of an unchanged tree read %q, want nothing", read)
			}

			tc.change(t, root)
			after, read := src.fetch(t)
			if diff := cmp.Diff(tc.wantRead, read); diff != "" {
				t.Errorf("files read after the change (-want +got):\n%s", diff)
			}
			if got := before == after; got != tc.same {
				t.Errorf("revision before %s, after %s: same = %v, want %v", before, after, got, tc.same)
			}
			if fresh := revision(t, root); fresh != after {
				t.Errorf("revision %s, but %s with nothing cached", after, fresh)
			}
			if diff := cmp.Diff(tc.wantCached, src.cached()); diff != "" {
				t.Errorf("hashes kept after the change (-want +got):\n%s", diff)
			}
		})
	}
}

// TestFetchRacyWindow checks the answer to the "racy git" problem: a file
// changed within racyWindow of a Fetch is not trusted to keep its stat
// through a later edit, so the next Fetch reads it again even though its
// stat has not changed; once the file is older, its hash is kept.
func TestFetchRacyWindow(t *testing.T) {
	t.Parallel() // it mostly waits for racyWindow
	needCache(t)
	root := t.TempDir()
	write(t, root, map[string]string{"kustomization.yaml": "resources: []\n"})
	// An old mtime does not make it older: the ctime cannot be set back.
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(filepath.Join(root, "kustomization.yaml"), old, old); err != nil {
		t.Fatal(err)
	}
	src := newTraced(t, root)

	for i, want := range []struct {
		wait time.Duration
		read []string
	}{
		{read: []string{"kustomization.yaml"}},
		{read: []string{"kustomization.yaml"}}, // stat unchanged, but too recent to trust
		{wait: aged, read: []string{"kustomization.yaml"}},
		{read: nil},
	} {
		time.Sleep(want.wait)
		if _, read := src.fetch(t); !slices.Equal(read, want.read) {
			t.Errorf("Fetch %d read %q, want %q", i+1, read, want.read)
		}
	}
}

func TestFetchIgnoredIsNotListedOrRead(t *testing.T) {
	root := t.TempDir()
	write(t, root, map[string]string{
		".gitignore":             "/build/\n*.log\n",
		"kustomization.yaml":     "resources: []\n",
		"app.log":                "x",
		"build/a/b.yaml":         "x",
		"sub/.gitignore":         "/local/\n",
		"sub/local/c.yaml":       "x",
		"sub/x/local/d.yaml":     "x", // anchored: not ignored
		"sub/x/local/e.log":      "x",
		"sub/kustomization.yaml": "x",
	})
	src := newTraced(t, root)
	src.fetch(t)
	src.opsMu.Lock()
	defer src.opsMu.Unlock()
	if diff := cmp.Diff([]string{".", "sub", "sub/x", "sub/x/local"}, src.ops["list"]); diff != "" {
		t.Errorf("directories listed (-want +got):\n%s", diff)
	}
	want := []string{".gitignore", "kustomization.yaml", "sub/.gitignore", "sub/kustomization.yaml", "sub/x/local/d.yaml"}
	if diff := cmp.Diff(want, src.ops["read"]); diff != "" {
		t.Errorf("files read (-want +got):\n%s", diff)
	}
}

func TestFetchConcurrent(t *testing.T) {
	t.Parallel() // it mostly waits for racyWindow
	root := t.TempDir()
	write(t, root, cacheTree)
	time.Sleep(aged)
	src := newTraced(t, root)
	src.trace = nil

	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 8 {
		wg.Go(func() {
			for j := range 8 {
				if _, err := src.Fetch(t.Context()); err != nil {
					errs <- err
				}
				if i == 0 {
					if err := os.WriteFile(filepath.Join(root, fmt.Sprintf("base/f%d.yaml", j)), []byte("x"), 0o644); err != nil {
						errs <- err
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Fetch: %v", err)
	}
	if got, want := revisionOf(t, src.Source), revision(t, root); got != want {
		t.Errorf("revision %s after concurrent Fetches, want %s as with nothing cached", got, want)
	}
}

func revisionOf(t *testing.T, src *Source) string {
	t.Helper()
	snap, err := src.Fetch(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return snap.Revision
}

// gitTree holds names that the .gitignore files of TestIgnoreMatchesGit
// pick from.
var gitTree = map[string]string{
	"a.log": "", "a.txt": "", "b.txt": "", "out": "", "x/out": "", "y/out/z": "",
	"build/x": "", "build/y/z": "", "sub/build/q": "",
	"config/prod.yaml": "", "config/dev.yaml": "", "config/sub/x.yaml": "",
	"docs/a.md": "", "docs/sub/b.md": "", "other/docs/c.md": "",
	"tmp/t": "", "a/tmp": "", "a/b.txt": "", "a/b/b.txt": "", "a/x/y/b.txt": "",
	"x.env": "", "sub/keep.env": "", "sub/other.env": "", "sub/x.yaml": "", "sub/deeper/x.yaml": "",
	"data/keep.yaml": "", "data/x": "", "keep/this.yaml": "", "keep/that.yaml": "",
	"#hash": "", "!bang": "", "space ": "", "trail.txt": "",
	"a1.tmp": "", "b1.tmp": "", "file1.txt": "", "fileX.txt": "",
	"link": "->a.txt", "lnk": "->sub",
}

// TestIgnoreMatchesGit checks the files a Fetch covers against the files
// git counts as untracked and not ignored, for a range of .gitignore
// files.
func TestIgnoreMatchesGit(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git on PATH")
	}
	tests := map[string]map[string]string{
		"none":                 {},
		"names and dirs":       {".gitignore": "*.log\n/build/\nout/\n"},
		"contents only":        {".gitignore": "config/**\n!config/prod.yaml\n"},
		"whitelist":            {".gitignore": "*\n!*/\n!*.yaml\n"},
		"anchored middle":      {".gitignore": "docs/*.md\n"},
		"double star":          {".gitignore": "**/tmp\na/**/b.txt\n"},
		"dirs below":           {".gitignore": "a/**/\n"},
		"nested negation":      {".gitignore": "*.env\n", "sub/.gitignore": "!keep.env\n"},
		"nested anchored":      {"sub/.gitignore": "/x.yaml\n/build/\n"},
		"no re-include below":  {".gitignore": "/data/\n!/data/keep.yaml\n"},
		"documented example":   {".gitignore": "/*\n!/keep/\n/keep/*\n!/keep/this.yaml\n!.gitignore\n"},
		"classes":              {".gitignore": "[!a]*.tmp\nfile[0-9].txt\n"},
		"escapes":              {".gitignore": "\\#hash\n\\!bang\n"},
		"spaces":               {".gitignore": "trail.txt   \nspace\\ \n"},
		"comments and blanks":  {".gitignore": "# a.txt\n\n   \nb.txt\n"},
		"crlf and bom":         {".gitignore": "\ufeffa.txt\r\nb.txt\r\n"},
		"links":                {".gitignore": "link\nlnk/\n"},
		"ignores itself":       {".gitignore": ".gitignore\n*.txt\n"},
		"deeper overrides":     {".gitignore": "!x.yaml\n", "sub/.gitignore": "x.yaml\n", "sub/deeper/.gitignore": "!x.yaml\n"},
		"ignored dir's ignore": {".gitignore": "/build/\n", "build/.gitignore": "!*\n"},
	}
	for name, ignores := range tests {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			write(t, root, gitTree)
			write(t, root, ignores)
			git(t, root, "init", "-q")
			out := git(t, root, "ls-files", "-z", "--others", "--exclude-standard")
			want := strings.Split(strings.TrimSuffix(out, "\x00"), "\x00")
			slices.Sort(want)

			if diff := cmp.Diff(want, covered(t, root)); diff != "" {
				t.Errorf("files covered, against git's untracked and not ignored (-git +Fetch):\n%s", diff)
			}
		})
	}
}

// git runs git in dir with no configuration but the repository's.
func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "HOME="+home, "XDG_CONFIG_HOME="+home)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %v: %v", args, err)
	}
	return string(out)
}

// covered returns the files and symlinks whose records a Fetch of root
// writes, sorted.
func covered(t *testing.T, root string) []string {
	t.Helper()
	src, err := New(Options{Path: root})
	if err != nil {
		t.Fatal(err)
	}
	var records bytes.Buffer
	if err := src.hash(t.Context(), root, &records); err != nil {
		t.Fatal(err)
	}
	// Records are kind, mode, path and value, each ending in NUL.
	fields := strings.Split(records.String(), "\x00")
	var names []string
	for i := 0; i+3 < len(fields); i += 4 {
		if kind := fields[i]; kind == "f" || kind == "l" {
			names = append(names, fields[i+2])
		}
	}
	slices.Sort(names)
	return names
}
