package git

import (
	"bytes"
	"compress/zlib"
	"crypto/rand"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/google/go-cmp/cmp"

	"github.com/gitopsd/gitopsd/test/gitserver"
)

// gitCmd runs the git binary in dir with a fixed identity and no user or
// system config, and returns its trimmed stdout.
func gitCmd(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(),
		"GIT_CONFIG_NOSYSTEM=1", "HOME="+t.TempDir(),
		"GIT_AUTHOR_NAME=Test", "GIT_AUTHOR_EMAIL=test@example.com",
		"GIT_COMMITTER_NAME=Test", "GIT_COMMITTER_EMAIL=test@example.com",
		"GIT_AUTHOR_DATE=2026-01-02T03:04:05Z", "GIT_COMMITTER_DATE=2026-01-02T03:04:05Z")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// commitZeros commits a file of size zero bytes with the git binary (fast
// for hundreds of MiB, where go-git takes seconds) and returns the commit.
// The repository is repacked, so servers send the blob without compressing
// it again for every fetch.
func commitZeros(t *testing.T, r *testRepo, name string, size int64) plumbing.Hash {
	t.Helper()
	f, err := os.Create(filepath.Join(r.dir, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	gitCmd(t, r.dir, "add", name)
	gitCmd(t, r.dir, "commit", "-q", "-m", "add "+name)
	gitCmd(t, r.dir, "repack", "-adq")
	repo, err := gogit.PlainOpen(r.dir) // go-git does not see new packs
	if err != nil {
		t.Fatal(err)
	}
	r.repo = repo
	return plumbing.NewHash(gitCmd(t, r.dir, "rev-parse", "HEAD"))
}

func randomBytes(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// historyRepo is a repository whose pack has deltas: one file edited in
// many commits, plus a second branch.
func historyRepo(t *testing.T) string {
	t.Helper()
	requireGit(t)
	dir := t.TempDir()
	gitCmd(t, dir, "init", "-q", "-b", "main")
	var content strings.Builder
	for i := range 40 {
		fmt.Fprintf(&content, "line %d: %s\n", i, strings.Repeat("x", i*7))
		if err := os.WriteFile(filepath.Join(dir, "app.yaml"), []byte(content.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		gitCmd(t, dir, "add", "app.yaml")
		gitCmd(t, dir, "commit", "-q", "-m", "edit "+strconv.Itoa(i))
	}
	return dir
}

// packOf returns a pack of every object in dir made by git pack-objects.
// Without ofs, deltas name their base by hash (REF_DELTA), as thin packs do.
func packOf(t *testing.T, dir string, ofs bool) []byte {
	t.Helper()
	args := []string{"pack-objects", "--stdout", "--all", "-q"}
	if ofs {
		args = append(args, "--delta-base-offset")
	}
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pack-objects: %v", err)
	}
	return out
}

// packDeltas counts the deltified objects git sees in pack p.
func packDeltas(t *testing.T, dir string, p []byte) int {
	t.Helper()
	f := filepath.Join(t.TempDir(), "p.pack")
	if err := os.WriteFile(f, p, 0o644); err != nil {
		t.Fatal(err)
	}
	gitCmd(t, dir, "index-pack", f)
	n := 0
	for _, line := range strings.Split(gitCmd(t, dir, "verify-pack", "-v", f), "\n") {
		if fields := strings.Fields(line); len(fields) == 7 { // sha type size packed offset depth base
			n++
		}
	}
	return n
}

func TestWalkPackReadsGitPacks(t *testing.T) {
	dir := historyRepo(t)
	for _, ofs := range []bool{true, false} {
		t.Run(fmt.Sprintf("ofs-delta %v", ofs), func(t *testing.T) {
			p := packOf(t, dir, ofs)
			if n := packDeltas(t, dir, p); n == 0 {
				t.Fatal("test pack has no deltas")
			}
			if err := walkPack(bytes.NewReader(p), limits{objectSize: 1 << 20, objects: 1000}); err != nil {
				t.Errorf("walkPack: %v", err)
			}
			// Fed a byte at a time through packGuard, all of it arrives.
			var got bytes.Buffer
			g := newPackGuard(nopCloser{&got}, limits{fetchSize: int64(len(p))})
			for i := range p {
				if _, err := g.Write(p[i : i+1]); err != nil {
					t.Fatalf("Write at %d: %v", i, err)
				}
			}
			if err := g.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if !bytes.Equal(got.Bytes(), p) {
				t.Errorf("packGuard forwarded %d bytes, want the %d of the pack", got.Len(), len(p))
			}
		})
	}
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func TestWalkPackRefuses(t *testing.T) {
	dir := historyRepo(t)
	p := packOf(t, dir, true)
	count := strings.Count(gitCmd(t, dir, "rev-list", "--objects", "--all"), "\n") + 1
	// The last edit makes a delta whose result is the largest version.
	largest := int64(len(gitCmd(t, dir, "cat-file", "-p", "HEAD:app.yaml")) + 1)
	tests := map[string]struct {
		pack    []byte
		limits  limits
		wantErr string
	}{
		"object count": {
			pack: p, limits: limits{objects: int64(count - 1)},
			wantErr: fmt.Sprintf("pack of %d objects is over the %d-object limit (MaxObjects)", count, count-1),
		},
		"object size": {
			pack: p, limits: limits{objectSize: largest - 1},
			wantErr: "-byte limit (MaxObjectSize)",
		},
		"not a pack":  {pack: []byte("HTTP/1.1 200 OK\r\n"), wantErr: "malformed pack: bad signature"},
		"truncated":   {pack: p[:len(p)/2], wantErr: "malformed pack"},
		"no checksum": {pack: p[:len(p)-1], wantErr: "malformed pack: unexpected EOF"},
		"bad version": {pack: append([]byte("PACK\x00\x00\x00\x09"), p[8:]...), wantErr: "unsupported version 9"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := walkPack(bytes.NewReader(tc.pack), tc.limits)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("walkPack error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// deltaBombPack is a pack of a 10-byte blob and a 203-byte delta of it that
// copies the blob 100 times: a 1000-byte result. ref picks REF_DELTA.
func deltaBombPack(t *testing.T, ref bool) []byte {
	t.Helper()
	entry := func(typ byte, size int, prefix, data []byte) []byte {
		var b bytes.Buffer
		c := typ<<4 | byte(size&15)
		for size >>= 4; size > 0; size >>= 7 {
			b.WriteByte(c | 0x80)
			c = byte(size & 0x7f)
		}
		b.WriteByte(c)
		b.Write(prefix)
		z := zlib.NewWriter(&b)
		z.Write(data)
		z.Close()
		return b.Bytes()
	}
	base := []byte("0123456789")
	delta := []byte{10, 0xe8, 0x07} // base size 10, result size 1000
	for range 100 {
		delta = append(delta, 0x90, 10) // copy 10 bytes from offset 0
	}
	var p bytes.Buffer
	p.WriteString("PACK\x00\x00\x00\x02\x00\x00\x00\x02")
	first := entry(3, len(base), nil, base)
	p.Write(first)
	if ref {
		id := plumbing.ComputeHash(plumbing.BlobObject, base)
		p.Write(entry(7, len(delta), id[:], delta))
	} else {
		p.Write(entry(6, len(delta), []byte{byte(len(first))}, delta))
	}
	sum := sha1.Sum(p.Bytes())
	p.Write(sum[:])
	return p.Bytes()
}

func TestWalkPackRefusesDeltaResult(t *testing.T) {
	for _, ref := range []bool{false, true} {
		t.Run(fmt.Sprintf("ref-delta %v", ref), func(t *testing.T) {
			p := deltaBombPack(t, ref)
			// go-git reads it as a valid pack making a 1000-byte blob.
			var idx idxfile.Writer
			parser, err := packfile.NewParser(packfile.NewScanner(bytes.NewReader(p)), &idx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := parser.Parse(); err != nil {
				t.Fatalf("go-git cannot parse the test pack: %v", err)
			}
			if err := walkPack(bytes.NewReader(p), limits{objectSize: 1000}); err != nil {
				t.Errorf("walkPack at the limit: %v", err)
			}
			err = walkPack(bytes.NewReader(p), limits{objectSize: 999})
			if want := "delta result of 1000 bytes is over the 999-byte limit (MaxObjectSize)"; err == nil || err.Error() != want {
				t.Errorf("walkPack error = %v, want %q", err, want)
			}
		})
	}
}

// TestPackGuardForwardsNoRefusedHeader checks the point of packGuard: go-git's
// writer never gets the whole header of an object that is refused, so it
// cannot start inflating it, however the pack is cut into writes.
func TestPackGuardForwardsNoRefusedHeader(t *testing.T) {
	requireGit(t)
	up := newTestRepo(t, t.TempDir(), "repo", "main")
	up.commitFile("app.yaml", "v: 1\n")
	const size = 4 << 20
	commitZeros(t, up, "big.bin", size)
	p := packOf(t, up.dir, true)
	f := filepath.Join(t.TempDir(), "p.pack")
	os.WriteFile(f, p, 0o644)
	gitCmd(t, up.dir, "index-pack", f)
	var offset int64 = -1
	for _, line := range strings.Split(gitCmd(t, up.dir, "verify-pack", "-v", f), "\n") {
		if fields := strings.Fields(line); len(fields) >= 5 && fields[1] == "blob" && fields[2] == strconv.Itoa(size) {
			offset, _ = strconv.ParseInt(fields[4], 10, 64)
		}
	}
	if offset < 0 {
		t.Fatal("big blob not found in the pack")
	}
	const headerLen = 4 // 4 MiB needs 4 + 7 + 7 + 7 bits of size
	for _, chunk := range []int{1, 3, 7, 4096, 32 << 10, len(p)} {
		t.Run(strconv.Itoa(chunk), func(t *testing.T) {
			var got bytes.Buffer
			g := newPackGuard(nopCloser{&got}, limits{objectSize: 1 << 20})
			var err error
			for i := 0; i < len(p) && err == nil; i += chunk {
				_, err = g.Write(p[i:min(i+chunk, len(p))])
			}
			g.Close()
			if want := "blob of 4194304 bytes is over the 1048576-byte limit (MaxObjectSize)"; err == nil || err.Error() != want {
				t.Fatalf("Write error = %v, want %q", err, want)
			}
			if int64(got.Len()) >= offset+headerLen {
				t.Errorf("forwarded %d bytes: the big blob's header ends at %d", got.Len(), offset+headerLen)
			}
		})
	}
}

func TestLimitDefaults(t *testing.T) {
	tests := map[string]struct {
		opts Options
		want limits
	}{
		"zero means default": {want: limits{
			fetchSize: 512 << 20, refsSize: 32 << 20, objectSize: 32 << 20, objects: 500_000,
			snapshotSize: 1 << 30, snapshotFiles: 100_000,
		}},
		"negative means none": {
			opts: Options{MaxFetchSize: -1, MaxRefsSize: -1, MaxObjectSize: -1, MaxObjects: -1, MaxSnapshotSize: -1, MaxSnapshotFiles: -1},
			want: limits{},
		},
		"set": {
			opts: Options{MaxFetchSize: 1, MaxRefsSize: 6, MaxObjectSize: 2, MaxObjects: 3, MaxSnapshotSize: 4, MaxSnapshotFiles: 5},
			want: limits{1, 6, 2, 3, 4, 5},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tc.opts.URL = "https://example.com/repo.git"
			src, err := New(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, src.limits, cmp.AllowUnexported(limits{})); diff != "" {
				t.Errorf("limits (-want +got):\n%s", diff)
			}
		})
	}
}

// remoteKind serves a repository directory over one transport.
type remoteKind struct {
	name  string
	serve func(t *testing.T, root, name string) Options // URL and Auth filled in
}

var remoteKinds = []remoteKind{
	{"http", func(t *testing.T, root, name string) Options {
		return Options{URL: gitserver.NewHTTP(t, root).RepoURL(name)}
	}},
	{"ssh", func(t *testing.T, root, name string) Options {
		key, pub := gitserver.NewSSHKey(t, "")
		srv := gitserver.NewSSH(t, root, pub)
		return Options{URL: srv.RepoURL(name), Auth: Auth{SSHPrivateKey: key, KnownHosts: []byte(srv.KnownHostsLine())}}
	}},
	{"file URL", func(t *testing.T, root, name string) Options {
		requireGit(t)
		return Options{URL: "file://" + filepath.Join(root, name)}
	}},
	{"local path", func(t *testing.T, root, name string) Options {
		requireGit(t)
		return Options{URL: filepath.Join(root, name)}
	}},
}

// cacheState is what a failed Fetch must leave as it was.
type cacheState struct {
	Current   string   // the current link's target
	Snapshots []string // entries of snapshots/
	Packs     []string // entries of repo/objects/pack
	Shallow   string
}

func readCacheState(t *testing.T, src *Source) cacheState {
	t.Helper()
	var st cacheState
	st.Current, _ = os.Readlink(filepath.Join(src.cacheDir, "current"))
	list := func(dir string) []string {
		entries, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return names
	}
	st.Snapshots = list(src.snapshotsDir())
	st.Packs = list(filepath.Join(src.repoDir(), "objects", "pack"))
	b, _ := os.ReadFile(filepath.Join(src.repoDir(), "shallow"))
	st.Shallow = string(b)
	return st
}

// fetchAllocs runs Fetch and returns its error and the bytes it allocated.
// Tests using it do not run in parallel, so the count is Fetch's own (and
// the in-process servers').
func fetchAllocs(t *testing.T, src *Source) (error, uint64) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := src.Fetch(t.Context())
	runtime.ReadMemStats(&after)
	return err, after.TotalAlloc - before.TotalAlloc
}

// checkRefused checks a Fetch that went over a limit: the error names the
// stage and the bound, the cache is as it was, and a good revision fetches.
func checkRefused(t *testing.T, src *Source, up *testRepo, err error, stage, wantErr string, before cacheState, good plumbing.Hash) {
	t.Helper()
	var le *limitError
	if !errors.As(err, &le) {
		t.Fatalf("Fetch error = %v, want a limit error", err)
	}
	if !strings.Contains(err.Error(), ": "+stage+": ") || !strings.Contains(err.Error(), wantErr) {
		t.Errorf("Fetch error = %q, want stage %s and %q", err, stage, wantErr)
	}
	if diff := cmp.Diff(before, readCacheState(t, src)); diff != "" {
		t.Errorf("cache after the refused fetch (-before +after):\n%s", diff)
	}
	gitCmd(t, up.dir, "reset", "-q", "--hard", good.String())
	gitCmd(t, up.dir, "clean", "-fdxq")
	h := up.commitFile("app.yaml", "v: good again\n")
	snap, err := src.Fetch(t.Context())
	if err != nil {
		t.Fatalf("Fetch of a good revision after the refusal: %v", err)
	}
	if want := revision("main", h); snap.Revision != want {
		t.Errorf("revision %q, want %q", snap.Revision, want)
	}
	if diff := cmp.Diff(map[string]string{"app.yaml": "file v: good again\n"}, readTree(t, snap.Dir)); diff != "" {
		t.Errorf("snapshot files (-want +got):\n%s", diff)
	}
}

// TestFetchRefusesLargeObject is the 1 GiB-of-zeros repository, scaled:
// 256 MiB of zeros is 256 KiB in the pack. Refused from its header, the blob
// is never inflated, so the Fetch allocates a small fraction of its size.
func TestFetchRefusesLargeObject(t *testing.T) {
	const size = 256 << 20
	root := t.TempDir()
	up := newTestRepo(t, root, "repo.git", "main")
	good := up.commitFile("app.yaml", "v: 1\n")
	bad := commitZeros(t, up, "big.bin", size)
	gitCmd(t, up.dir, "reset", "-q", "--hard", good.String())
	main := plumbing.NewBranchReferenceName("main")
	for _, kind := range remoteKinds {
		t.Run(kind.name, func(t *testing.T) {
			up.setRef(main, good)
			opts := kind.serve(t, root, "repo.git")
			opts.CacheDir, opts.MaxObjectSize = t.TempDir(), 1<<20
			src, err := New(opts)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := src.Fetch(t.Context()); err != nil {
				t.Fatalf("first Fetch: %v", err)
			}
			before := readCacheState(t, src)
			up.setRef(main, bad)

			err, allocs := fetchAllocs(t, src)

			checkRefused(t, src, up, err, "fetch", "blob of 268435456 bytes is over the 1048576-byte limit (MaxObjectSize)", before, good)
			t.Logf("refused fetch allocated %d KiB", allocs>>10)
			if allocs > 32<<20 {
				t.Errorf("refused fetch allocated %d MiB, want far less than the blob's %d MiB", allocs>>20, size>>20)
			}
		})
	}
}

// TestFetchRefusesUnwantedLargeObject: the blob is on a side branch only, but
// a commit Ref on a server that refuses bare SHAs fetches every branch, so
// the pack carries it.
func TestFetchRefusesUnwantedLargeObject(t *testing.T) {
	root := t.TempDir()
	up := newTestRepo(t, root, "repo.git", "main")
	want := up.commitFile("app.yaml", "v: 1\n")
	gitCmd(t, up.dir, "checkout", "-q", "-b", "junk")
	commitZeros(t, up, "big.bin", 64<<20)
	gitCmd(t, up.dir, "checkout", "-q", "main")
	for _, kind := range remoteKinds {
		t.Run(kind.name, func(t *testing.T) {
			opts := kind.serve(t, root, "repo.git")
			opts.CacheDir, opts.MaxObjectSize, opts.Ref = t.TempDir(), 1<<20, want.String()
			src, err := New(opts)
			if err != nil {
				t.Fatal(err)
			}
			err, allocs := fetchAllocs(t, src)
			if err == nil || !strings.Contains(err.Error(), "fetch: blob of 67108864 bytes is over the 1048576-byte limit (MaxObjectSize)") {
				t.Fatalf("Fetch error = %v, want MaxObjectSize at stage fetch", err)
			}
			if st := readCacheState(t, src); len(st.Packs) != 0 || len(st.Snapshots) != 0 || st.Current != "" {
				t.Errorf("cache after the refused fetch: %+v, want no packs or snapshots", st)
			}
			if allocs > 32<<20 {
				t.Errorf("refused fetch allocated %d MiB", allocs>>20)
			}
		})
	}
}

func TestFetchRefusesLargePack(t *testing.T) {
	root := t.TempDir()
	up := newTestRepo(t, root, "repo.git", "main")
	good := up.commitFile("app.yaml", "v: 1\n")
	up.write("noise.bin", randomBytes(t, 2<<20), 0o644) // incompressible
	bad := up.commit("noise")
	gitCmd(t, up.dir, "reset", "-q", "--hard", good.String())
	main := plumbing.NewBranchReferenceName("main")
	for _, kind := range remoteKinds {
		t.Run(kind.name, func(t *testing.T) {
			up.setRef(main, good)
			opts := kind.serve(t, root, "repo.git")
			opts.CacheDir, opts.MaxFetchSize = t.TempDir(), 1<<20
			src, err := New(opts)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := src.Fetch(t.Context()); err != nil {
				t.Fatalf("first Fetch: %v", err)
			}
			before := readCacheState(t, src)
			up.setRef(main, bad)

			err, allocs := fetchAllocs(t, src)

			checkRefused(t, src, up, err, "fetch", "pack is over the 1048576-byte limit (MaxFetchSize)", before, good)
			if allocs > 32<<20 {
				t.Errorf("refused fetch allocated %d MiB", allocs>>20)
			}
		})
	}
}

func TestFetchRefusesTooManyObjects(t *testing.T) {
	f := newFixture(t, Options{MaxObjects: 10})
	good := f.fetch(t) // commit, tree, blob
	before := readCacheState(t, f.src)
	for i := range 10 {
		f.up.write(fmt.Sprintf("f%d.yaml", i), strconv.Itoa(i), 0o644)
	}
	f.up.commit("many files")

	_, err := f.src.Fetch(t.Context())

	checkRefused(t, f.src, f.up, err, "fetch", "objects is over the 10-object limit (MaxObjects)", before, plumbing.NewHash(filepath.Base(good.Dir)))
}

// TestLsRemoteRefusesEndlessAdvertisement: over http the responses are
// counted too, so a server that never stops advertising refs is cut off.
func TestLsRemoteRefusesEndlessAdvertisement(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-git-upload-pack-advertisement")
		io.WriteString(w, "001e# service=git-upload-pack\n0000")
		first := strings.Repeat("a", 40) + " HEAD\x00side-band-64k ofs-delta\n"
		fmt.Fprintf(w, "%04x%s", 4+len(first), first)
		for i := 0; r.Context().Err() == nil && i < 10_000_000; i++ {
			line := fmt.Sprintf("%s refs/tags/t%09d\n", strings.Repeat("b", 40), i)
			if _, err := fmt.Fprintf(w, "%04x%s", 4+len(line), line); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	src, err := New(Options{URL: srv.URL + "/repo.git", CacheDir: t.TempDir(), MaxFetchSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	err, allocs := fetchAllocs(t, src)
	if err == nil || !strings.Contains(err.Error(), "ls-remote: ") || !strings.Contains(err.Error(), "ref advertisement is over the 1048576-byte limit (MaxFetchSize)") {
		t.Fatalf("Fetch error = %v, want MaxFetchSize at stage ls-remote", err)
	}
	t.Logf("refused ls-remote allocated %d MiB", allocs>>20)
}

func TestFetchRefusesLargeSnapshot(t *testing.T) {
	tests := map[string]struct {
		opts    Options
		files   int
		size    int
		wantErr string
	}{
		"bytes": {
			opts: Options{MaxSnapshotSize: 1 << 20}, files: 3, size: 400 << 10,
			wantErr: "f2.bin: snapshot is over the 1048576-byte limit (MaxSnapshotSize)",
		},
		"files": {
			opts: Options{MaxSnapshotFiles: 10}, files: 10, size: 1,
			wantErr: "snapshot is over the 10-entry limit (MaxSnapshotFiles)",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, tc.opts)
			good := f.fetch(t)
			before := readCacheState(t, f.src)
			for i := range tc.files {
				f.up.write(fmt.Sprintf("f%d.bin", i), strings.Repeat("x", tc.size), 0o644)
			}
			f.up.commit("big")

			_, err := f.src.Fetch(t.Context())

			// The pack is whole and stays; only the snapshot is refused.
			before.Packs = readCacheState(t, f.src).Packs
			before.Shallow = readCacheState(t, f.src).Shallow
			checkRefused(t, f.src, f.up, err, "checkout", tc.wantErr, before, plumbing.NewHash(filepath.Base(good.Dir)))
		})
	}
}

// TestFetchRefusesTreeBomb: a tree naming one subtree 100 times, three levels
// deep, is a million files from four tree objects.
func TestFetchRefusesTreeBomb(t *testing.T) {
	f := newFixture(t, Options{MaxSnapshotFiles: 1000})
	st := f.up.repo.Storer
	type encoder interface {
		Encode(plumbing.EncodedObject) error
	}
	store := func(o encoder) plumbing.Hash {
		obj := st.NewEncodedObject()
		if err := o.Encode(obj); err != nil {
			t.Fatal(err)
		}
		h, err := st.SetEncodedObject(obj)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	blob := st.NewEncodedObject()
	blob.SetType(plumbing.BlobObject)
	leaf, _ := st.SetEncodedObject(blob)
	h, mode := leaf, filemode.Regular
	for range 3 {
		var tree object.Tree
		for i := range 100 {
			tree.Entries = append(tree.Entries, object.TreeEntry{Name: fmt.Sprintf("e%03d", i), Mode: mode, Hash: h})
		}
		h, mode = store(&tree), filemode.Dir
	}
	head, _ := f.up.repo.Head()
	sig := object.Signature{Name: "Test", Email: "test@example.com", When: f.up.when}
	c := store(&object.Commit{Author: sig, Committer: sig, Message: "bomb", TreeHash: h, ParentHashes: []plumbing.Hash{head.Hash()}})
	f.up.setRef(plumbing.NewBranchReferenceName("main"), c)

	_, err := f.src.Fetch(t.Context())

	if err == nil || !strings.Contains(err.Error(), "checkout: ") || !strings.Contains(err.Error(), "snapshot is over the 1000-entry limit (MaxSnapshotFiles)") {
		t.Fatalf("Fetch error = %v, want MaxSnapshotFiles at stage checkout", err)
	}
	if _, err := os.Lstat(f.src.snapshotDir(c)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused snapshot exists: %v", err)
	}
}

// TestSnapshotRefusesCachedLargeObject: an object fetched before the limit
// was lowered (a shared cache, an upgrade) is still not written.
func TestSnapshotRefusesCachedLargeObject(t *testing.T) {
	f := newFixture(t, Options{})
	f.up.write("big.bin", strings.Repeat("x", 2<<20), 0o644)
	c := f.up.commit("big")
	snap := f.fetch(t)
	if err := os.RemoveAll(snap.Dir); err != nil {
		t.Fatal(err)
	}
	// A commit Ref in the cache needs no fetch: straight to checkout.
	src, err := New(Options{URL: f.srv.RepoURL("repo.git"), Ref: c.String(), CacheDir: f.src.cacheDir, MaxObjectSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	f.srv.Counts()
	_, err = src.Fetch(t.Context())
	if err == nil || !strings.Contains(err.Error(), "checkout: ") || !strings.Contains(err.Error(), "big.bin: blob of 2097152 bytes is over the 1048576-byte limit (MaxObjectSize)") {
		t.Fatalf("Fetch error = %v, want MaxObjectSize at stage checkout", err)
	}
	if ls, fetches := f.srv.Counts(); ls+fetches != 0 {
		t.Errorf("Fetch made %d requests, want none", ls+fetches)
	}
	if _, err := os.Lstat(snap.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused snapshot exists: %v", err)
	}
}
