package git

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"github.com/go-git/go-git/v5/storage/memory"
)

// Fetch brings the cache up to date with the remote and returns the snapshot
// of the wanted revision. It first lists the remote's refs (a single small
// request) and returns at once when that commit's snapshot is already
// published and checked; a commit Ref whose snapshot exists needs no
// network at all, unless the cache must be repaired (see the package doc).
//
// Fetch returns promptly when ctx ends, even if a transport ignores it; the
// abandoned work finishes in the background (it may still publish its
// snapshot) and the next Fetch waits for it.
// Errors name the redacted URL and the stage (cache, ls-remote, fetch,
// verify, checkout), and a bound of Options (MaxFetchSize and the others)
// by name when one was exceeded; on error the previously returned
// snapshots are left untouched and the current one stays current.
func (s *Source) Fetch(ctx context.Context) (Snapshot, error) {
	if err := context.Cause(ctx); err != nil {
		return Snapshot{}, s.wrap("fetch", err)
	}
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return Snapshot{}, s.wrap("fetch", fmt.Errorf("waiting for the previous fetch: %w", context.Cause(ctx)))
	}
	type result struct {
		snap Snapshot
		err  error
	}
	done := make(chan result, 1)
	go func() {
		defer func() { <-s.sem }()
		snap, err := s.fetch(ctx)
		done <- result{snap, err}
	}()
	select {
	case r := <-done:
		return r.snap, r.err
	case <-ctx.Done():
		select {
		case r := <-done:
			return r.snap, r.err
		default:
			return Snapshot{}, s.wrap("fetch", context.Cause(ctx))
		}
	}
}

// fetch does Fetch's work; the caller holds s.sem. A snapshot is handed
// out only once it has been checked against its commit in this process
// (s.checked); a cache that fails the check is repaired first, and the
// repair logged once.
func (s *Source) fetch(ctx context.Context) (Snapshot, error) {
	if err := os.MkdirAll(s.snapshotsDir(), 0o755); err != nil {
		return Snapshot{}, s.wrap("cache", err)
	}
	unlock, err := lockCache(ctx, s.cacheDir)
	if err != nil {
		return Snapshot{}, s.wrap("cache", fmt.Errorf("lock %s: %w", s.cacheDir, err))
	}
	defer unlock()
	t, err := s.lsRemote(ctx)
	if err != nil {
		return Snapshot{}, err
	}
	if s.checked[t.hash] && s.published(t.hash) {
		s.log.DebugContext(ctx, "git: revision unchanged, not fetching", "source", s, "commit", t.hash.String())
		return s.activate(t.hash, t.name), nil
	}
	var r repair
	h, err := s.update(ctx, t, &r, false)
	if ce := (*cloneError)(nil); errors.As(err, &ce) {
		r.add("clone", err)
		if err := s.dropClone(); err != nil {
			return Snapshot{}, s.wrap("cache", s.cacheErr(err))
		}
		h, err = s.update(ctx, t, &r, true)
	}
	if err != nil {
		return Snapshot{}, s.repairFailed(err, &r)
	}
	s.logRepair(ctx, &r, h)
	return s.activate(h, t.name), nil
}

// update brings t's commit into the clone and its snapshot into the cache,
// unless both are there already, and returns the commit. A snapshot that
// differs from its commit is written again and added to r; an error
// wrapping a *cloneError means the clone cannot produce the commit. A
// fresh clone (one just removed) is fetched into even when the snapshot
// is published.
func (s *Source) update(ctx context.Context, t target, r *repair, fresh bool) (plumbing.Hash, error) {
	if err := cleanPackTemps(s.repoDir()); err != nil { // a crash's or a full disk's leftovers
		s.log.Warn("git: remove partial packs", "source", s, "error", err)
	}
	repo, err := s.openRepo()
	if err != nil {
		return plumbing.ZeroHash, s.wrap("cache", s.cacheErr(err))
	}
	if !s.cloneChecked {
		if err := checkPacks(s.repoDir()); err != nil {
			return plumbing.ZeroHash, s.wrap("cache", &cloneError{err})
		}
		s.cloneChecked = true
	}
	commit, err := s.commit(ctx, repo, t, fresh)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if len(s.verifyKeys) > 0 && !s.verified[commit.Hash] {
		if err := verifyCommit(commit, s.verifyKeys); err != nil {
			return plumbing.ZeroHash, s.wrap("verify", err)
		}
		s.verified[commit.Hash] = true
	}
	rewrote, err := s.export(ctx, repo, commit)
	if err != nil {
		return plumbing.ZeroHash, s.wrap("checkout", err)
	}
	if rewrote != nil {
		r.add("snapshot", rewrote)
	}
	s.checked[commit.Hash] = true
	return commit.Hash, nil
}

// commit returns t's commit: from the clone when its snapshot is published
// (the clone must then hold it: a snapshot is only written from it), else,
// or when the clone is fresh, fetched.
func (s *Source) commit(ctx context.Context, repo *gogit.Repository, t target, fresh bool) (*object.Commit, error) {
	if fresh || !s.published(t.hash) {
		return s.fetchCommit(ctx, repo, t)
	}
	c, err := repo.CommitObject(t.hash)
	if err != nil {
		return nil, s.wrap("cache", &cloneError{fmt.Errorf("commit %s of a published snapshot: %w", t.hash, err)})
	}
	s.log.DebugContext(ctx, "git: revision unchanged, not fetching", "source", s, "commit", t.hash.String())
	return c, nil
}

// repairFailed says in err, the error of a Fetch that found the cache
// broken, what it was repairing.
func (s *Source) repairFailed(err error, r *repair) error {
	var fe *fetchError
	if len(r.what) == 0 || !errors.As(err, &fe) {
		return err
	}
	return &fetchError{msg: fe.msg + " (repairing the cache " + strings.Join(r.what, " and ") + ": " + s.reasonText(r) + ")", err: err}
}

// dropClone removes the cache clone, to be cloned again.
func (s *Source) dropClone() error {
	s.cloneChecked = false
	return os.RemoveAll(s.repoDir())
}

// lsRemote resolves the ref against the remote's advertised refs. A commit
// ref resolves to itself without asking the remote.
func (s *Source) lsRemote(ctx context.Context) (target, error) {
	if s.ref.kind == refCommit {
		return resolve(s.ref, nil)
	}
	op, cancel := s.opContext(ctx)
	defer cancel()
	rem := gogit.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{s.remote.url}})
	refs, err := rem.ListContext(s.withBudget(op), &gogit.ListOptions{Auth: s.auth, PeelingOption: gogit.AppendPeeled, ProxyOptions: sshDeadline(op, s.remote)})
	if err != nil {
		return target{}, s.wrap("ls-remote", s.timedOut(ctx, op, err))
	}
	t, err := resolve(s.ref, refs)
	if err != nil {
		return target{}, s.wrap("ls-remote", err)
	}
	return t, nil
}

// published reports whether h's snapshot exists (it is complete: snapshots
// appear only by rename). It may still differ from its commit: see
// Source.checked.
func (s *Source) published(h plumbing.Hash) bool {
	if h.IsZero() {
		return false
	}
	_, err := os.Lstat(s.snapshotDir(h))
	return err == nil
}

func (s *Source) repoDir() string { return filepath.Join(s.cacheDir, "repo") }

// largeObjectThreshold is the size above which go-git streams an object
// from its pack when it is read rather than loading it whole, so writing a
// big file into a snapshot does not hold it in memory (deltas excepted: a
// delta's base and result are built in memory, up to MaxObjectSize).
const largeObjectThreshold = 1 << 20

// openRepo opens the bare cache repository, creating it on first use and
// recreating it when it cannot be opened (say, a crash during init).
func (s *Source) openRepo() (*gogit.Repository, error) {
	dir := s.repoDir()
	repo, err := gogit.PlainOpen(dir)
	if err != nil && !errors.Is(err, gogit.ErrRepositoryNotExists) {
		s.log.Debug("git: recreating unreadable cache repository", "source", s, "dir", dir, "error", err)
		if err := os.RemoveAll(dir); err != nil {
			return nil, err
		}
	}
	if err != nil {
		if repo, err = gogit.PlainInit(dir, true); err != nil {
			return nil, err
		}
	}
	// Reopened on the same files with largeObjectThreshold, which
	// PlainOpen has no option for.
	st, ok := repo.Storer.(*filesystem.Storage)
	if !ok {
		return repo, nil
	}
	return gogit.Open(filesystem.NewStorageWithOptions(st.Filesystem(), cache.NewObjectLRUDefault(),
		filesystem.Options{LargeObjectThreshold: largeObjectThreshold}), nil)
}

// fetchCommit fetches t's ref (force-updating, so rewritten branches are
// followed) and returns the commit it now points to, which may be newer than
// what ls-remote saw.
func (s *Source) fetchCommit(ctx context.Context, repo *gogit.Repository, t target) (*object.Commit, error) {
	if t.kind == refCommit {
		return s.fetchSHA(ctx, repo, t.hash)
	}
	local := t.ref // tags keep their name
	if t.kind == refBranch {
		local = plumbing.NewRemoteReferenceName("origin", t.name)
	}
	spec := config.RefSpec("+" + t.ref.String() + ":" + local.String())
	if err := s.fetchRefs(ctx, repo, s.depth, spec); err != nil {
		return nil, s.wrap("fetch", err)
	}
	ref, err := repo.Reference(local, true)
	if err != nil {
		return nil, s.wrap("fetch", fmt.Errorf("%s after fetch: %w", local, err))
	}
	c, err := peel(repo, ref.Hash())
	if err != nil {
		return nil, s.wrap("fetch", fmt.Errorf("%s: %w", t.ref, err))
	}
	return c, nil
}

// fetchSHA gets commit h: from the cache, else by asking for it alone, else
// (servers allow that only with uploadpack.allowReachableSHA1InWant) by
// fetching every branch and tag with full history.
func (s *Source) fetchSHA(ctx context.Context, repo *gogit.Repository, h plumbing.Hash) (*object.Commit, error) {
	if c, err := repo.CommitObject(h); err == nil {
		return c, nil
	}
	spec := config.RefSpec("+" + h.String() + ":refs/gitopsd/" + h.String())
	err := s.fetchRefs(ctx, repo, s.depth, spec)
	if errors.Is(err, gogit.ErrExactSHA1NotSupported) {
		err = s.fetchRefs(ctx, repo, 0, "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*")
	}
	if err != nil {
		return nil, s.wrap("fetch", err)
	}
	c, err := repo.CommitObject(h)
	if err != nil {
		return nil, s.wrap("fetch", fmt.Errorf("commit %s %w", h, errRefNotFound))
	}
	return c, nil
}

// fetchRefs fetches specs; depth 0 means full history, which in a shallow
// cache means deepening to everything. The pack is held to s.limits (see
// limitedStorer); a failed fetch leaves the cache as it found it.
func (s *Source) fetchRefs(ctx context.Context, repo *gogit.Repository, depth int, specs ...config.RefSpec) error {
	shallow, err := repo.Storer.Shallow()
	if err != nil {
		return err
	}
	unshallow := false
	if depth == 0 && len(shallow) > 0 {
		depth, unshallow = math.MaxInt32, true
	}
	op, cancel := s.opContext(ctx)
	defer cancel()
	fctx, abort := context.WithCancelCause(s.withBudget(op))
	defer abort(nil)
	st := &limitedStorer{Storer: repo.Storer, limits: s.limits, abort: abort}
	if s.faults != nil {
		st.Storer = s.faults(st.Storer)
	}
	rem := gogit.NewRemote(st, &config.RemoteConfig{Name: "origin", URLs: []string{s.remote.url}})
	err = rem.FetchContext(fctx, &gogit.FetchOptions{
		RefSpecs:     specs,
		Depth:        depth,
		Auth:         s.auth,
		Tags:         gogit.NoTags,
		Force:        true,
		ProxyOptions: sshDeadline(op, s.remote),
	})
	if errors.Is(err, gogit.NoErrAlreadyUpToDate) {
		err = nil
	}
	if refused := st.refused(); refused != nil {
		err = refused // go-git reports the cancellation it caused
	}
	if err != nil {
		s.undoFetch(repo, shallow)
		return s.cacheErr(s.timedOut(ctx, op, err))
	}
	if unshallow {
		err = dropShallow(repo)
	}
	return err
}

// timedOut says so in err when op, an operation under ctx, hit
// Options.Timeout (rather than ctx ending, or an error of its own). The
// connection's deadline is op's (ssh, git://): its i/o timeout may come a
// moment before op's own timer ends the context, so the deadline is looked
// at too.
func (s *Source) timedOut(ctx, op context.Context, err error) error {
	deadline, ok := op.Deadline()
	passed := ok && !time.Now().Before(deadline)
	if ctx.Err() == nil && (errors.Is(op.Err(), context.DeadlineExceeded) || passed) {
		return fmt.Errorf("timed out after %v (Timeout): %w", s.timeout, err)
	}
	return err
}

// cacheErr names the cache directory in err when err is the cache's (a
// file operation failed: a full disk, an I/O error), not the remote's.
func (s *Source) cacheErr(err error) error {
	var pe *fs.PathError
	var le *os.LinkError
	if errors.As(err, &pe) || errors.As(err, &le) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EIO) {
		return fmt.Errorf("cache %s: %w", s.cacheDir, err)
	}
	return err
}

// undoFetch removes what a failed fetch left: go-git writes the server's
// shallow list before the pack, and keeps a pack it could not index in a
// temp file. Refs are only updated after a whole pack, so they are as
// before. Failures only cost disk or a deeper next fetch: logged.
func (s *Source) undoFetch(repo *gogit.Repository, shallow []plumbing.Hash) {
	if now, err := repo.Storer.Shallow(); err != nil || !slices.Equal(now, shallow) {
		if err := repo.Storer.SetShallow(shallow); err != nil {
			s.log.Warn("git: restore shallow list after a failed fetch", "source", s, "error", err)
		}
	}
	if err := cleanPackTemps(s.repoDir()); err != nil {
		s.log.Warn("git: remove partial packs", "source", s, "error", err)
	}
}

// dropShallow removes from the shallow list the commits whose parents are
// all present after a deepening fetch: go-git ignores the server's
// "unshallow" lines, and a stale entry would keep every later fetch
// deepening again.
func dropShallow(repo *gogit.Repository) error {
	shallow, err := repo.Storer.Shallow()
	if err != nil {
		return err
	}
	keep := shallow[:0]
	for _, h := range shallow {
		c, err := repo.CommitObject(h)
		if err != nil || !allPresent(repo, c.ParentHashes) {
			keep = append(keep, h)
		}
	}
	return repo.Storer.SetShallow(keep)
}

func allPresent(repo *gogit.Repository, hashes []plumbing.Hash) bool {
	for _, h := range hashes {
		if _, err := repo.CommitObject(h); err != nil {
			return false
		}
	}
	return true
}

// peel follows annotated tags to the commit they name.
func peel(repo *gogit.Repository, h plumbing.Hash) (*object.Commit, error) {
	for range 10 {
		obj, err := repo.Object(plumbing.AnyObject, h)
		if err != nil {
			return nil, fromClone(err)
		}
		switch o := obj.(type) {
		case *object.Commit:
			return o, nil
		case *object.Tag:
			h = o.Target
		default:
			return nil, fmt.Errorf("%s is a %s, not a commit", h, obj.Type())
		}
	}
	return nil, fmt.Errorf("%s: too many nested tags", h)
}
