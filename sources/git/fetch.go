package git

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/memory"
)

// Fetch brings the cache up to date with the remote and returns the snapshot
// of the wanted revision. It first lists the remote's refs (a single small
// request) and returns at once when that commit's snapshot is already
// published; a commit Ref whose snapshot exists needs no network at all.
//
// Fetch returns promptly when ctx ends, even if a transport ignores it; the
// abandoned work finishes in the background (it may still publish its
// snapshot) and the next Fetch waits for it.
// Errors name the redacted URL and the stage (cache, ls-remote, fetch,
// verify, checkout); on error the previously returned snapshots are left
// untouched and the current one stays current.
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

// fetch does Fetch's work; the caller holds s.sem.
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
	if s.published(t.hash) {
		s.log.DebugContext(ctx, "git: revision unchanged, not fetching", "source", s, "commit", t.hash.String())
		return s.activate(t.hash, t.name), nil
	}
	repo, err := s.openRepo()
	if err != nil {
		return Snapshot{}, s.wrap("cache", err)
	}
	commit, err := s.fetchCommit(ctx, repo, t)
	if err != nil {
		return Snapshot{}, err
	}
	if len(s.verifyKeys) > 0 && !s.verified[commit.Hash] {
		if err := verifyCommit(commit, s.verifyKeys); err != nil {
			return Snapshot{}, s.wrap("verify", err)
		}
		s.verified[commit.Hash] = true
	}
	if err := s.export(ctx, repo, commit); err != nil {
		return Snapshot{}, s.wrap("checkout", err)
	}
	return s.activate(commit.Hash, t.name), nil
}

// lsRemote resolves the ref against the remote's advertised refs. A commit
// ref resolves to itself without asking the remote.
func (s *Source) lsRemote(ctx context.Context) (target, error) {
	if s.ref.kind == refCommit {
		return resolve(s.ref, nil)
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	rem := gogit.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{s.remote.url}})
	refs, err := rem.ListContext(ctx, &gogit.ListOptions{Auth: s.auth, PeelingOption: gogit.AppendPeeled})
	if err != nil {
		return target{}, s.wrap("ls-remote", err)
	}
	t, err := resolve(s.ref, refs)
	if err != nil {
		return target{}, s.wrap("ls-remote", err)
	}
	return t, nil
}

// published reports whether h's snapshot exists (it is complete: snapshots
// appear only by rename) and may be handed out without fetching.
func (s *Source) published(h plumbing.Hash) bool {
	if h.IsZero() || (len(s.verifyKeys) > 0 && !s.verified[h]) {
		return false
	}
	_, err := os.Lstat(s.snapshotDir(h))
	return err == nil
}

// openRepo opens the bare cache repository, creating it on first use and
// recreating it when it cannot be opened (say, a crash during init).
func (s *Source) openRepo() (*gogit.Repository, error) {
	dir := filepath.Join(s.cacheDir, "repo")
	repo, err := gogit.PlainOpen(dir)
	if err == nil {
		return repo, nil
	}
	if !errors.Is(err, gogit.ErrRepositoryNotExists) {
		s.log.Debug("git: recreating unreadable cache repository", "source", s, "dir", dir, "error", err)
		if err := os.RemoveAll(dir); err != nil {
			return nil, err
		}
	}
	return gogit.PlainInit(dir, true)
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
// cache means deepening to everything.
func (s *Source) fetchRefs(ctx context.Context, repo *gogit.Repository, depth int, specs ...config.RefSpec) error {
	unshallow := false
	if depth == 0 {
		if shallow, err := repo.Storer.Shallow(); err == nil && len(shallow) > 0 {
			depth, unshallow = math.MaxInt32, true
		}
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	rem := gogit.NewRemote(repo.Storer, &config.RemoteConfig{Name: "origin", URLs: []string{s.remote.url}})
	err := rem.FetchContext(ctx, &gogit.FetchOptions{
		RefSpecs: specs,
		Depth:    depth,
		Auth:     s.auth,
		Tags:     gogit.NoTags,
		Force:    true,
	})
	if errors.Is(err, gogit.NoErrAlreadyUpToDate) {
		err = nil
	}
	if err == nil && unshallow {
		err = dropShallow(repo)
	}
	return err
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
			return nil, err
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
