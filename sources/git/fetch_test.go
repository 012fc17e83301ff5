package git

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/google/go-cmp/cmp"

	"github.com/gitopsd/gitopsd/test/gitserver"
)

// fixture is an upstream repository served over HTTP and a Source on it.
type fixture struct {
	up  *testRepo
	srv *gitserver.HTTP
	src *Source
}

// newFixture serves a repository "repo.git" on branch main with one commit
// and returns a Source for it built from opts (URL and CacheDir filled in).
func newFixture(t *testing.T, opts Options, gitConfig ...string) *fixture {
	t.Helper()
	root := t.TempDir()
	f := &fixture{up: newTestRepo(t, root, "repo.git", "main")}
	f.srv = gitserver.NewHTTP(t, root, gitConfig...)
	f.up.commitFile("app.yaml", "v: 1\n")
	if opts.URL == "" {
		opts.URL = f.srv.RepoURL("repo.git")
	}
	if opts.CacheDir == "" {
		opts.CacheDir = t.TempDir()
	}
	src, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	f.src = src
	return f
}

func (f *fixture) fetch(t *testing.T) Snapshot {
	t.Helper()
	snap, err := f.src.Fetch(t.Context())
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	return snap
}

func wantSnapshot(f *fixture, name string, h plumbing.Hash) Snapshot {
	return Snapshot{Dir: filepath.Join(f.src.cacheDir, "snapshots", h.String()), Revision: revision(name, h)}
}

func TestFetchClonesIntoSnapshot(t *testing.T) {
	f := newFixture(t, Options{})
	f.up.write("base/kustomization.yaml", "resources: [app.yaml]\n", 0o644)
	f.up.write("hack/run.sh", "#!/bin/sh\n", 0o755)
	f.up.symlink("link.yaml", "app.yaml")
	f.up.symlink("base/up", "../hack")
	h := f.up.commit("layout")

	got := f.fetch(t)

	if diff := cmp.Diff(wantSnapshot(f, "main", h), got); diff != "" {
		t.Errorf("snapshot (-want +got):\n%s", diff)
	}
	wantFiles := map[string]string{
		"app.yaml":                "file v: 1\n",
		"base":                    "dir",
		"base/kustomization.yaml": "file resources: [app.yaml]\n",
		"base/up":                 "link -> ../hack",
		"hack":                    "dir",
		"hack/run.sh":             "exec #!/bin/sh\n",
		"link.yaml":               "link -> app.yaml",
	}
	if diff := cmp.Diff(wantFiles, readTree(t, got.Dir)); diff != "" {
		t.Errorf("snapshot files (-want +got):\n%s", diff)
	}
	link, err := os.Readlink(filepath.Join(f.src.cacheDir, "current"))
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join("snapshots", h.String()); link != want {
		t.Errorf("current -> %q, want %q", link, want)
	}
	shallow, err := os.ReadFile(filepath.Join(f.src.cacheDir, "repo", "shallow"))
	if err != nil || strings.TrimSpace(string(shallow)) != h.String() {
		t.Errorf("cache clone is not shallow at %s: shallow file %q, %v", h, shallow, err)
	}
}

func TestFetchUnchangedOnlyListsRefs(t *testing.T) {
	f := newFixture(t, Options{})
	first := f.fetch(t)
	f.srv.Counts()

	second := f.fetch(t)

	if diff := cmp.Diff(first, second); diff != "" {
		t.Errorf("second snapshot (-want +got):\n%s", diff)
	}
	lsRemote, fetches := f.srv.Counts()
	if lsRemote != 1 || fetches != 0 {
		t.Errorf("second Fetch made %d ls-remote and %d fetch requests, want 1 and 0", lsRemote, fetches)
	}
}

func TestFetchNewCommit(t *testing.T) {
	f := newFixture(t, Options{})
	first := f.fetch(t)
	h := f.up.commitFile("app.yaml", "v: 2\n")

	got := f.fetch(t)

	if diff := cmp.Diff(wantSnapshot(f, "main", h), got); diff != "" {
		t.Errorf("snapshot (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"app.yaml": "file v: 2\n"}, readTree(t, got.Dir)); diff != "" {
		t.Errorf("new snapshot (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"app.yaml": "file v: 1\n"}, readTree(t, first.Dir)); diff != "" {
		t.Errorf("previous snapshot changed (-want +got):\n%s", diff)
	}
}

func TestFetchFollowsForcePush(t *testing.T) {
	f := newFixture(t, Options{})
	base, _ := f.up.repo.Head()
	f.up.commitFile("app.yaml", "v: 2\n")
	f.fetch(t)
	f.up.resetHard(base.Hash())
	rewritten := f.up.commitFile("app.yaml", "v: rewritten\n")

	got := f.fetch(t)

	if diff := cmp.Diff(wantSnapshot(f, "main", rewritten), got); diff != "" {
		t.Errorf("snapshot (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"app.yaml": "file v: rewritten\n"}, readTree(t, got.Dir)); diff != "" {
		t.Errorf("snapshot files (-want +got):\n%s", diff)
	}
}

func TestFetchDefaultBranchFromRemoteHEAD(t *testing.T) {
	root := t.TempDir()
	up := newTestRepo(t, root, "trunk.git", "trunk")
	h := up.commitFile("app.yaml", "trunk\n")
	srv := gitserver.NewHTTP(t, root)
	src, err := New(Options{URL: srv.RepoURL("trunk.git"), CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}

	got, err := src.Fetch(t.Context())
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if want := revision("trunk", h); got.Revision != want {
		t.Errorf("revision = %q, want %q", got.Revision, want)
	}
}

func TestFetchTags(t *testing.T) {
	tests := map[string]struct {
		ref      string
		wantName string
		wantV    string
	}{
		"lightweight tag":      {ref: "v1.0.0", wantName: "v1.0.0", wantV: "1.0.0"},
		"annotated tag":        {ref: "tag:v1.2.0", wantName: "v1.2.0", wantV: "1.2.0"},
		"semver range":         {ref: ">=1.0.0 <2.0.0", wantName: "v1.10.0", wantV: "1.10.0"},
		"semver x-range":       {ref: "semver:1.x", wantName: "v1.10.0", wantV: "1.10.0"},
		"semver tilde":         {ref: "~1.2", wantName: "v1.2.0", wantV: "1.2.0"},
		"semver major two":     {ref: "^2", wantName: "v2.0.0", wantV: "2.0.0"},
		"branch wins over tag": {ref: "v1.0.0-branch", wantName: "v1.0.0-branch", wantV: "branch"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, Options{Ref: tc.ref})
			hashes := map[string]plumbing.Hash{}
			for _, v := range []string{"1.0.0", "1.2.0", "1.10.0", "2.0.0"} {
				hashes[v] = f.up.commitFile("app.yaml", "v: "+v+"\n")
				f.up.tag("v"+v, hashes[v], v == "1.2.0" || v == "1.10.0")
			}
			f.up.tag("not-a-version", f.up.commitFile("app.yaml", "v: other\n"), false)
			hashes["branch"] = f.up.commitFile("app.yaml", "v: branch\n")
			f.up.setRef(plumbing.NewBranchReferenceName("v1.0.0-branch"), hashes["branch"])
			f.up.tag("v1.0.0-branch", hashes["1.0.0"], false)
			f.up.commitFile("app.yaml", "v: main\n")

			got := f.fetch(t)

			if diff := cmp.Diff(wantSnapshot(f, tc.wantName, hashes[tc.wantV]), got); diff != "" {
				t.Errorf("snapshot (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(map[string]string{"app.yaml": "file v: " + tc.wantV + "\n"}, readTree(t, got.Dir)); diff != "" {
				t.Errorf("snapshot files (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFetchCommit(t *testing.T) {
	tests := map[string]struct {
		gitConfig []string
		warm      bool  // a shallow clone of main is in the cache already
		wantConns int64 // ref advertisements: one per fetch attempt
	}{
		"server refuses a bare SHA: full fetch fallback": {wantConns: 2},
		"fallback deepens a shallow cache":               {warm: true, wantConns: 2},
		"server allows a reachable SHA":                  {gitConfig: allowAnySHA, wantConns: 1},
		"reachable SHA into a shallow cache":             {gitConfig: allowAnySHA, warm: true, wantConns: 1},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			up := newTestRepo(t, root, "repo.git", "main")
			old := up.commitFile("app.yaml", "v: old\n")
			up.commitFile("app.yaml", "v: new\n")
			srv := gitserver.NewHTTP(t, root, tc.gitConfig...)
			cache := t.TempDir()
			if tc.warm {
				main, err := New(Options{URL: srv.RepoURL("repo.git"), CacheDir: cache})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := main.Fetch(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			src, err := New(Options{URL: srv.RepoURL("repo.git"), Ref: old.String(), CacheDir: cache})
			if err != nil {
				t.Fatal(err)
			}

			srv.Counts()
			got, err := src.Fetch(t.Context())
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if conns, _ := srv.Counts(); conns != tc.wantConns {
				t.Errorf("Fetch made %d fetch attempts, want %d", conns, tc.wantConns)
			}
			want := Snapshot{Dir: src.snapshotDir(old), Revision: "sha1:" + old.String()}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("snapshot (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(map[string]string{"app.yaml": "file v: old\n"}, readTree(t, got.Dir)); diff != "" {
				t.Errorf("snapshot files (-want +got):\n%s", diff)
			}

			srv.Counts()
			if _, err := src.Fetch(t.Context()); err != nil {
				t.Fatalf("second Fetch: %v", err)
			}
			if ls, fetches := srv.Counts(); ls != 0 || fetches != 0 {
				t.Errorf("second Fetch of a commit made %d ls-remote and %d fetch requests, want none", ls, fetches)
			}
		})
	}
}

func TestFetchUnknownRef(t *testing.T) {
	tests := map[string]struct {
		ref, want string
	}{
		"branch":       {ref: "branch:nope", want: `ls-remote: branch "nope" not found on remote`},
		"full ref":     {ref: "refs/heads/gone", want: `ls-remote: branch "gone" not found on remote`},
		"tag":          {ref: "tag:v9", want: `ls-remote: tag "v9" not found on remote`},
		"bare name":    {ref: "nope", want: `ls-remote: branch or tag "nope" not found on remote`},
		"semver range": {ref: ">=5.0.0", want: `ls-remote: tag matching semver range ">=5.0.0" not found on remote`},
		"commit":       {ref: strings.Repeat("ab", 20), want: "fetch: commit " + strings.Repeat("ab", 20) + " not found on remote"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, Options{Ref: tc.ref})
			_, err := f.src.Fetch(t.Context())
			if !errors.Is(err, errRefNotFound) {
				t.Fatalf("Fetch error = %v, want one wrapping %v", err, errRefNotFound)
			}
			for _, want := range []string{f.srv.RepoURL("repo.git"), tc.want} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

func TestFetchServerDownKeepsSnapshot(t *testing.T) {
	f := newFixture(t, Options{})
	first := f.fetch(t)
	f.srv.Close()

	_, err := f.src.Fetch(t.Context())

	if err == nil {
		t.Fatal("Fetch from a stopped server succeeded")
	}
	if !strings.Contains(err.Error(), f.srv.RepoURL("repo.git")) || !strings.Contains(err.Error(), "ls-remote") {
		t.Errorf("error %q does not name the URL and stage", err)
	}
	if diff := cmp.Diff(map[string]string{"app.yaml": "file v: 1\n"}, readTree(t, first.Dir)); diff != "" {
		t.Errorf("previous snapshot changed (-want +got):\n%s", diff)
	}
}

func TestFetchCleansOldSnapshots(t *testing.T) {
	f := newFixture(t, Options{KeepSnapshots: 1})
	var snaps []Snapshot
	for i := range 4 {
		if i > 0 {
			f.up.commitFile("app.yaml", strings.Repeat("x", i))
		}
		snaps = append(snaps, f.fetch(t))
	}
	// Going back to a kept snapshot reuses it and makes it current.
	f.up.resetHard(plumbing.NewHash(filepath.Base(snaps[2].Dir)))
	back := f.fetch(t)

	entries, err := os.ReadDir(filepath.Join(f.src.cacheDir, "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	want := []string{filepath.Base(snaps[2].Dir), filepath.Base(snaps[3].Dir)}
	if want[0] > want[1] {
		want[0], want[1] = want[1], want[0]
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("snapshot dirs (-want +got):\n%s", diff)
	}
	if back.Dir != snaps[2].Dir {
		t.Errorf("going back gave %s, want the kept %s", back.Dir, snaps[2].Dir)
	}
}

func TestFetchLocalPath(t *testing.T) {
	requireGit(t)
	up := newTestRepo(t, t.TempDir(), "local", "main")
	h := up.commitFile("app.yaml", "local\n")
	for _, u := range []string{up.dir, "file://" + up.dir} {
		src, err := New(Options{URL: u, CacheDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		got, err := src.Fetch(t.Context())
		if err != nil {
			t.Fatalf("Fetch %s: %v", u, err)
		}
		if want := revision("main", h); got.Revision != want {
			t.Errorf("%s: revision %q, want %q", u, got.Revision, want)
		}
	}
}

func TestFetchCancelledContext(t *testing.T) {
	f := newFixture(t, Options{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := f.src.Fetch(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Fetch with a cancelled ctx = %v, want context.Canceled", err)
	}
}

// hangingServer accepts connections and never answers until the test ends.
func hangingServer(t *testing.T) *httptest.Server {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs first: unblocks handlers so Close returns
	return srv
}

func TestFetchStopsOnTimeoutAndCancel(t *testing.T) {
	tests := map[string]struct {
		timeout time.Duration // Options.Timeout
		ctx     func(context.Context) (context.Context, context.CancelFunc)
		wantIs  error
	}{
		"ctx deadline": {
			ctx: func(ctx context.Context) (context.Context, context.CancelFunc) {
				return context.WithTimeout(ctx, 200*time.Millisecond)
			},
			wantIs: context.DeadlineExceeded,
		},
		"ctx cancelled": {
			ctx: func(ctx context.Context) (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(ctx)
				time.AfterFunc(200*time.Millisecond, cancel)
				return ctx, cancel
			},
			wantIs: context.Canceled,
		},
		"Options.Timeout": {
			timeout: 200 * time.Millisecond,
			ctx:     context.WithCancel,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			srv := hangingServer(t)
			src, err := New(Options{URL: srv.URL + "/repo.git", CacheDir: t.TempDir(), Timeout: tc.timeout})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := tc.ctx(t.Context())
			defer cancel()

			start := time.Now()
			_, err = src.Fetch(ctx)
			elapsed := time.Since(start)

			if err == nil {
				t.Fatal("Fetch from a hanging server succeeded")
			}
			if elapsed > 5*time.Second {
				t.Errorf("Fetch took %v to give up, want about 200ms", elapsed)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error %v does not wrap %v", err, tc.wantIs)
			}
			if !strings.Contains(err.Error(), srv.URL+"/repo.git") {
				t.Errorf("error %q does not name the URL", err)
			}
		})
	}
}

func TestFetchNeverRevealsCredentials(t *testing.T) {
	const urlSecret, authSecret, passphrase = "url-t0ken-s3cret", "auth-passw0rd", "key-passphr4se"
	var sent atomic.Value // the basic auth of the last request, "user:pass"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, _ := r.BasicAuth()
		sent.Store(user + ":" + pass)
		w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
		http.Error(w, "bad credentials", http.StatusUnauthorized)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	tests := map[string]struct {
		opts     Options
		wantSent string
	}{
		"user and token in URL": {
			opts:     Options{URL: "http://alice:" + urlSecret + "@" + host + "/repo.git"},
			wantSent: "alice:" + urlSecret,
		},
		"token as URL username": {
			opts:     Options{URL: "http://" + urlSecret + "@" + host + "/repo.git"},
			wantSent: urlSecret + ":",
		},
		"Auth password": {
			opts:     Options{URL: srv.URL + "/repo.git", Auth: Auth{Username: "alice", Password: authSecret}},
			wantSent: "alice:" + authSecret,
		},
		"Auth wins over URL": {
			opts:     Options{URL: "http://bob:" + urlSecret + "@" + host + "/repo.git", Auth: Auth{Password: authSecret, SSHKeyPassphrase: passphrase}},
			wantSent: "git:" + authSecret,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			opts := tc.opts
			opts.CacheDir = t.TempDir()
			src, err := New(opts)
			if err != nil {
				t.Fatal(err)
			}
			_, fetchErr := src.Fetch(t.Context())
			if fetchErr == nil {
				t.Fatal("Fetch against a 401 server succeeded")
			}
			var logged bytes.Buffer
			slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "source", src, "opts", opts, "auth", opts.Auth, "error", fetchErr)
			outputs := map[string]string{
				"error":          fetchErr.Error(),
				"String":         src.String(),
				"Options %v":     fmt.Sprintf("%v", opts),
				"Options %+v":    fmt.Sprintf("%+v", opts),
				"Options %#v":    fmt.Sprintf("%#v", opts),
				"Auth %#v":       fmt.Sprintf("%#v", opts.Auth),
				"slog":           logged.String(),
				"cache dir file": readAll(t, opts.CacheDir),
			}
			for what, out := range outputs {
				for _, secret := range []string{urlSecret, authSecret, passphrase} {
					if strings.Contains(out, secret) {
						t.Errorf("%s reveals a secret: %s", what, out)
					}
				}
			}
			if !strings.Contains(fetchErr.Error(), srv.URL+"/repo.git") || !strings.Contains(fetchErr.Error(), "authentication required") {
				t.Errorf("error %q does not name the redacted URL and the cause", fetchErr)
			}
			if got := sent.Load(); got != tc.wantSent {
				t.Errorf("server got basic auth %q, want %q", got, tc.wantSent)
			}
		})
	}
}

// readAll concatenates every regular file under dir.
func readAll(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			c, _ := os.ReadFile(p)
			b.Write(c)
		}
		return nil
	})
	return b.String()
}

// cachedHistory counts the commits of the snapshot's first-parent history
// that the cache clone holds, stopping at its shallow boundary as git does.
func cachedHistory(t *testing.T, src *Source, snap Snapshot) int {
	t.Helper()
	repo, err := gogit.PlainOpen(filepath.Join(src.cacheDir, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	shallow, err := repo.Storer.Shallow()
	if err != nil {
		t.Fatal(err)
	}
	boundary := map[plumbing.Hash]bool{}
	for _, h := range shallow {
		boundary[h] = true
	}
	n := 0
	for h := plumbing.NewHash(filepath.Base(snap.Dir)); ; {
		c, err := repo.CommitObject(h)
		if err != nil {
			t.Fatalf("commit %s missing inside the shallow boundary: %v", h, err)
		}
		n++
		if boundary[h] || c.NumParents() == 0 {
			return n
		}
		h = c.ParentHashes[0]
	}
}

func TestFetchDepth(t *testing.T) {
	tests := map[string]struct {
		depths []int // one Source per entry on the same cache, a commit between
		want   int   // commits in the cache after the last fetch
	}{
		"default is shallow":       {depths: []int{0}, want: 1},
		"depth 2":                  {depths: []int{2}, want: 2},
		"full history":             {depths: []int{-1}, want: 4},
		"shallow cache deepened":   {depths: []int{1, -1}, want: 5},
		"full cache made shallow":  {depths: []int{-1, 1}, want: 1},
		"shallow fetches go on":    {depths: []int{1, 1}, want: 1},
		"depth 2 then new commits": {depths: []int{2, 2}, want: 2},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, Options{})
			for i := range 3 {
				f.up.commitFile("n", strings.Repeat("x", i))
			}
			var snap Snapshot
			var src *Source
			for i, depth := range tc.depths {
				if i > 0 {
					f.up.commitFile("n", "next")
				}
				var err error
				src, err = New(Options{URL: f.srv.RepoURL("repo.git"), CacheDir: f.src.cacheDir, Depth: depth})
				if err != nil {
					t.Fatal(err)
				}
				if snap, err = src.Fetch(t.Context()); err != nil {
					t.Fatalf("Fetch with depth %d: %v", depth, err)
				}
			}
			if got := cachedHistory(t, src, snap); got != tc.want {
				t.Errorf("cache holds %d commits of history, want %d", got, tc.want)
			}
		})
	}
}

func TestCacheHoldsNoCredentials(t *testing.T) {
	root := t.TempDir()
	up := newTestRepo(t, root, "repo.git", "main")
	up.commitFile("app.yaml", "v: 1\n")
	srv := gitserver.NewHTTP(t, root) // ignores credentials: the fetch succeeds
	const secret = "t0ken-in-url"
	src, err := New(Options{
		URL:      "http://alice:" + secret + "@" + strings.TrimPrefix(srv.RepoURL("repo.git"), "http://"),
		CacheDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Fetch(t.Context()); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if strings.Contains(readAll(t, filepath.Join(src.cacheDir, "repo")), secret) {
		t.Errorf("the cache clone stores the URL's password")
	}
}
