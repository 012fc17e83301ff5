package git

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// Cache layout under CacheDir:
//
//	repo/               bare clone, shallow by default
//	snapshots/<sha>/    one published revision each, never modified
//	snapshots/.tmp-*    a snapshot being written
//	current -> snapshots/<sha>
const (
	snapshotsDirName = "snapshots"
	tmpPrefix        = ".tmp-"
	currentLink      = "current"
	maxTreeDepth     = 256 // deeper trees are malformed or hostile
)

func (s *Source) snapshotsDir() string { return filepath.Join(s.cacheDir, snapshotsDirName) }

func (s *Source) snapshotDir(h plumbing.Hash) string {
	return filepath.Join(s.snapshotsDir(), h.String())
}

// export writes commit's tree to its snapshot directory: into a temp dir
// first, renamed into place only once complete, so a snapshot directory is
// always whole. A snapshot already there is kept when it matches the commit
// (checkSnapshot) and written again when it does not; that is reported as
// rewrote. A failure to read the clone is a *cloneError.
func (s *Source) export(ctx context.Context, repo *gogit.Repository, commit *object.Commit) (rewrote error, err error) {
	dir := s.snapshotDir(commit.Hash)
	tree, err := (&snapshotBudget{limits: s.limits}).tree(repo.Storer, commit.TreeHash)
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", commit.Hash, err)
	}
	if _, err := os.Lstat(dir); err == nil {
		var mismatch *mismatchError
		err := s.checkSnapshot(ctx, dir, repo.Storer, tree)
		if !errors.As(err, &mismatch) {
			return nil, err
		}
		s.log.DebugContext(ctx, "git: snapshot differs from its commit, writing it again", "source", s, "commit", commit.Hash.String(), "error", err)
		if err := os.RemoveAll(dir); err != nil {
			return nil, err
		}
		rewrote = err
	}
	return rewrote, s.write(ctx, repo, commit, tree)
}

// write writes commit's tree into a new snapshot directory.
func (s *Source) write(ctx context.Context, repo *gogit.Repository, commit *object.Commit, tree *object.Tree) (err error) {
	b := &snapshotBudget{limits: s.limits}
	tmp, err := os.MkdirTemp(s.snapshotsDir(), tmpPrefix+commit.Hash.String()[:12]+"-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	root, err := os.OpenRoot(tmp)
	if err != nil {
		return err
	}
	defer root.Close()
	if err := writeTree(ctx, root, repo.Storer, b, tree, ".", 0); err != nil {
		return fmt.Errorf("commit %s: %w", commit.Hash, err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil { // MkdirTemp made it 0700
		return err
	}
	return os.Rename(tmp, s.snapshotDir(commit.Hash))
}

// writeTree recreates tree under dir inside root. os.Root keeps every write
// inside the snapshot even if a hostile tree tries "..", or a path through a
// symlink it created; symlinks themselves are recreated verbatim, and the
// kustomize stage rejects those that point outside the snapshot.
func writeTree(ctx context.Context, root *os.Root, st storer.EncodedObjectStorer, b *snapshotBudget, tree *object.Tree, dir string, depth int) error {
	if depth > maxTreeDepth {
		return fmt.Errorf("%s: tree deeper than %d levels", dir, maxTreeDepth)
	}
	for _, e := range tree.Entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		name := path.Join(dir, e.Name)
		if err := checkEntryName(e.Name); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if err := b.entry(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if err := writeEntry(ctx, root, st, b, e, name, depth); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

func writeEntry(ctx context.Context, root *os.Root, st storer.EncodedObjectStorer, b *snapshotBudget, e object.TreeEntry, name string, depth int) error {
	switch e.Mode {
	case filemode.Dir:
		sub, err := b.tree(st, e.Hash)
		if err != nil {
			return err
		}
		if err := root.Mkdir(name, 0o755); err != nil {
			return err
		}
		return writeTree(ctx, root, st, b, sub, name, depth+1)
	case filemode.Regular, filemode.Deprecated:
		return writeBlob(root, st, b, e.Hash, name, 0o644)
	case filemode.Executable:
		return writeBlob(root, st, b, e.Hash, name, 0o755)
	case filemode.Symlink:
		target, err := readBlob(st, e.Hash)
		if err != nil {
			return err
		}
		return root.Symlink(string(target), name)
	case filemode.Submodule:
		// Like a checkout without --recurse-submodules: an empty directory.
		return root.Mkdir(name, 0o755)
	}
	return fmt.Errorf("unsupported file mode %s", e.Mode)
}

// checkEntryName rejects names git itself refuses to check out. os.Root
// would stop an escape anyway; this gives a clear error and keeps .git out.
func checkEntryName(name string) error {
	switch {
	case name == "", name == ".", name == "..":
		return fmt.Errorf("invalid tree entry name %q", name)
	case strings.ContainsAny(name, "/\x00") || strings.ContainsRune(name, filepath.Separator):
		return fmt.Errorf("invalid tree entry name %q", name)
	case strings.EqualFold(name, ".git"):
		return errors.New("refusing to write a .git entry")
	}
	return nil
}

// writeBlob writes blob h to name. Its bytes are hashed as they are
// written: a clone that returns other bytes than the commit names (a
// corrupt or truncated pack) fails the write with a *cloneError.
func writeBlob(root *os.Root, st storer.EncodedObjectStorer, b *snapshotBudget, h plumbing.Hash, name string, perm os.FileMode) (err error) {
	blob, err := object.GetBlob(st, h)
	if err != nil {
		return fromClone(err)
	}
	if err := b.file(blob.Size); err != nil {
		return err
	}
	r, err := blob.Reader()
	if err != nil {
		return fromClone(err)
	}
	defer r.Close()
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	hasher := plumbing.NewHasher(plumbing.BlobObject, blob.Size)
	n, err := io.Copy(f, io.TeeReader(cloneReader{io.LimitReader(r, blob.Size)}, hasher))
	switch {
	case err != nil:
		return err
	case n != blob.Size || hasher.Sum() != h:
		return &cloneError{fmt.Errorf("blob %s reads as %d bytes of other content than its %d", h, n, blob.Size)}
	}
	return nil
}

// snapshotBudget counts what one export writes against the snapshot limits.
// Sizes come from object headers, so a file over a limit is refused before
// it is read or written.
type snapshotBudget struct {
	limits       limits
	bytes, files int64
}

func (b *snapshotBudget) entry() error {
	b.files++
	if over(b.limits.snapshotFiles, b.files) {
		return &limitError{what: "snapshot", limit: b.limits.snapshotFiles, unit: "entry", option: "MaxSnapshotFiles"}
	}
	return nil
}

func (b *snapshotBudget) file(size int64) error {
	if over(b.limits.objectSize, size) { // fetched before the limit was set
		return &limitError{what: fmt.Sprintf("blob of %d bytes", size), limit: b.limits.objectSize, unit: "byte", option: "MaxObjectSize"}
	}
	b.bytes += size
	if over(b.limits.snapshotSize, b.bytes) {
		return &limitError{what: "snapshot", limit: b.limits.snapshotSize, unit: "byte", option: "MaxSnapshotSize"}
	}
	return nil
}

// tree decodes tree h, which go-git does in memory, unless it is over
// MaxObjectSize.
func (b *snapshotBudget) tree(st storer.EncodedObjectStorer, h plumbing.Hash) (*object.Tree, error) {
	o, err := st.EncodedObject(plumbing.TreeObject, h)
	if err != nil {
		return nil, fromClone(err)
	}
	if over(b.limits.objectSize, o.Size()) {
		return nil, &limitError{what: fmt.Sprintf("tree of %d bytes", o.Size()), limit: b.limits.objectSize, unit: "byte", option: "MaxObjectSize"}
	}
	t, err := object.DecodeTree(st, o)
	return t, fromClone(err)
}

// maxSymlinkTarget bounds a symlink blob: the OS limit is PATH_MAX.
const maxSymlinkTarget = 4096

func readBlob(st storer.EncodedObjectStorer, h plumbing.Hash) ([]byte, error) {
	blob, err := object.GetBlob(st, h)
	if err != nil {
		return nil, fromClone(err)
	}
	if blob.Size > maxSymlinkTarget {
		return nil, fmt.Errorf("symlink target longer than %d bytes", maxSymlinkTarget)
	}
	r, err := blob.Reader()
	if err != nil {
		return nil, fromClone(err)
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, blob.Size))
	if err != nil {
		return nil, fromClone(err)
	}
	if plumbing.ComputeHash(plumbing.BlobObject, b) != h {
		return nil, &cloneError{fmt.Errorf("blob %s reads as other content", h)}
	}
	return b, nil
}

// activate makes h's snapshot the current one: it is marked most recent,
// the current link is swapped to it, and snapshots beyond KeepSnapshots
// go. Failures here only cost disk, so they are logged, not returned.
func (s *Source) activate(h plumbing.Hash, name string) Snapshot {
	dir := s.snapshotDir(h)
	now := time.Now()
	if err := os.Chtimes(dir, now, now); err != nil {
		s.log.Debug("git: touch snapshot", "source", s, "dir", dir, "error", err)
	}
	if err := s.setCurrent(h); err != nil {
		s.log.Debug("git: update current link", "source", s, "error", err)
	}
	s.clean(h)
	return Snapshot{Dir: dir, Revision: revision(name, h)}
}

// setCurrent points <CacheDir>/current at h's snapshot, atomically.
func (s *Source) setCurrent(h plumbing.Hash) error {
	link := filepath.Join(s.cacheDir, currentLink)
	tmp := link + ".tmp"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Symlink(filepath.Join(snapshotsDirName, h.String()), tmp); err != nil {
		return err
	}
	return os.Rename(tmp, link)
}

// clean removes snapshots beyond the KeepSnapshots most recent besides
// current, and temp dirs left by an interrupted export (under s.sem, no
// export of this Source is running).
func (s *Source) clean(current plumbing.Hash) {
	entries, err := os.ReadDir(s.snapshotsDir())
	if err != nil {
		s.log.Warn("git: list snapshots", "source", s, "error", err)
		return
	}
	type snap struct {
		name string
		mod  time.Time
	}
	var old []snap
	for _, e := range entries {
		switch {
		case strings.HasPrefix(e.Name(), tmpPrefix):
			s.remove(e.Name())
		case isFullSHA(e.Name()) && e.Name() != current.String():
			info, err := e.Info()
			if err != nil {
				continue
			}
			old = append(old, snap{e.Name(), info.ModTime()})
		}
	}
	sort.Slice(old, func(i, j int) bool { return old[i].mod.After(old[j].mod) })
	for i := s.keep; i < len(old); i++ {
		s.remove(old[i].name)
	}
}

func (s *Source) remove(name string) {
	delete(s.checked, plumbing.NewHash(name))
	if err := os.RemoveAll(filepath.Join(s.snapshotsDir(), name)); err != nil {
		s.log.Warn("git: remove old snapshot", "source", s, "snapshot", name, "error", err)
	}
}
