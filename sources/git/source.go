package git

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/go-git/go-git/v5/storage"
)

// Options configures a Source. The zero value of every field but URL works.
type Options struct {
	// URL is the repository: https://, http://, ssh://, git://, scp-like
	// git@host:path, file:// or a local path. Credentials in the URL
	// (https://user:token@host/...) are accepted when Auth has none, but
	// are stripped from everything stored or printed; prefer Auth, since a
	// URL tends to end up in argv and shell history. file:// URLs and local
	// paths need the git binary: go-git runs its git-upload-pack for them.
	URL string

	// Ref is what to deploy, so a cluster can follow a branch, pin a release
	// or stay on one commit. Forms, in the order they are told apart:
	//   - "" : the branch the remote's HEAD points to, else "main";
	//   - "branch:NAME", "tag:NAME", "semver:RANGE", "commit:SHA",
	//     "refs/heads/NAME", "refs/tags/NAME": that kind, explicitly;
	//   - 40 hex digits: that commit;
	//   - any other value: a branch of that name if the remote has one, else
	//     a tag of that name, else a semver range over tags (">=1.0.0 <2.0.0",
	//     "1.x", "~1.2") of which the highest matching version wins.
	// Use a prefix when a name could be read two ways (a branch named "1.x").
	// Ranges skip pre-releases unless they name one (">=2.0.0-0"), and tags
	// that are not versions.
	Ref string

	// CacheDir holds the clone and the snapshots, so restarts and repeated
	// fetches are incremental. Processes sharing it take turns through a
	// lock file; Sources following different refs should not share one, as
	// each prunes the other's snapshots. Default:
	// os.TempDir()/gitopsd-git-<hash of URL and Ref>.
	CacheDir string

	// Depth is the clone and fetch depth: only the wanted commit's files are
	// needed, and history costs time and disk. 0 means 1; negative means
	// full history. A commit Ref that is no branch or tag tip is fetched
	// with full history when the server refuses to send it alone.
	Depth int

	// Auth holds credentials; see Auth.
	Auth Auth

	// Timeout bounds each network operation (ls-remote, fetch) so a hung
	// server cannot stall the loop; the ctx passed to Fetch bounds the whole
	// call too. 0 means 60s; negative means only ctx applies.
	Timeout time.Duration

	// KeepSnapshots is how many snapshots besides the current one are kept,
	// so a consumer still reading the previous revision is not pulled out
	// from under. 0 means 2; negative means none.
	KeepSnapshots int

	// InsecureSkipHostKeyCheck allows ssh URLs without Auth.KnownHosts. It
	// exists for throwaway setups only: without host key verification a
	// man in the middle chooses what gets applied.
	InsecureSkipHostKeyCheck bool

	// VerifyKeys are ASCII-armored OpenPGP public keys (rings). When set, a
	// commit is published only if it carries an OpenPGP signature made by
	// one of them, so a compromised git host cannot push to the cluster.
	// Only the commit is checked, not an annotated tag's own signature.
	VerifyKeys []string

	// MaxFetchSize bounds the bytes one network operation (the ls-remote,
	// each fetch) receives: the pack and, over http(s), the whole responses
	// (ref advertisement, shallow and ACK lines, progress). A fetch streams
	// into a pack file in the cache, so this is the disk one fetch can take;
	// it stops a broken or hostile remote from sending until the disk is
	// full. Over it, Fetch fails at stage ls-remote or fetch. A GitOps repo
	// fetches a few MiB at depth 1. 0 means 512 MiB; negative means
	// unlimited.
	MaxFetchSize int64

	// MaxRefsSize bounds the ref advertisement an http(s) server sends
	// (the list of its branches and tags, read at every ls-remote and
	// fetch), within MaxFetchSize. go-git decodes it whole into memory, at
	// about twice its size, so a server advertising without end would cost
	// up to twice MaxFetchSize of memory. Over it, Fetch fails at stage
	// ls-remote. 0 means 32 MiB, some 450,000 refs, more than large hosts
	// advertise with every pull request's refs; negative means unlimited.
	MaxRefsSize int64

	// MaxObjectSize bounds the inflated size of any one object (file, tree,
	// commit) a fetch brings and a snapshot writes. go-git's pack indexer
	// holds each object whole in memory, three copies at once for a delta
	// (base, result, cached base), and a 1 MiB pack can hold a 1 GiB file
	// of zeros: this bounds a fetch's memory to about three times it. An
	// object over it is refused from its header before it is inflated, a
	// delta from the size of the object it makes, and the fetch fails at
	// stage fetch (checkout, for one already in the cache). 0 means 32 MiB,
	// several times the largest single-file manifests (CRD bundles of a
	// few MiB); negative means unlimited.
	MaxObjectSize int64

	// MaxObjects bounds the objects in one fetched pack, refused from the
	// pack's header. go-git's indexer keeps about 500 bytes of memory per
	// object, and small objects pack at a few dozen bytes each: a 20 MiB
	// pack of 500,000 files costs 250 MiB of heap. A depth-1 fetch has one
	// object per file and directory, plus the commit. 0 means 500,000;
	// negative means unlimited.
	MaxObjects int64

	// MaxSnapshotSize bounds the bytes of the files written into one
	// snapshot, so a repository cannot fill the disk with its checkout (up
	// to KeepSnapshots+1 snapshots are kept at once). Each file's size is
	// known before it is written, so a snapshot never goes over; one that
	// would is removed and Fetch fails at stage checkout. 0 means 1 GiB;
	// negative means unlimited.
	MaxSnapshotSize int64

	// MaxSnapshotFiles bounds the entries (files, directories, symlinks) of
	// one snapshot. Trees can name the same subtree many times, so a few KiB
	// of objects can describe a billion empty files, which no byte bound
	// catches. Over it, Fetch fails at stage checkout. 0 means 100,000;
	// negative means unlimited.
	MaxSnapshotFiles int64

	// Logger receives DEBUG detail (skipped fetches), a WARN "git cache
	// repaired" when a corrupt snapshot or clone was rebuilt (nothing else
	// reports a repair that succeeded), and a WARN when an old snapshot
	// cannot be removed. Default: discard. Fetch's result and error are the
	// real report.
	Logger *slog.Logger
}

// String describes o with the URL's credentials removed and Auth redacted.
func (o Options) String() string {
	r, err := parseRemote(o.URL)
	u := r.url
	if err != nil {
		u = "(invalid URL)"
	}
	return fmt.Sprintf("git.Options{URL:%s Ref:%q CacheDir:%q Depth:%d Auth:%s}", u, o.Ref, o.CacheDir, o.Depth, o.Auth)
}

// GoString keeps %#v from printing credentials.
func (o Options) GoString() string { return o.String() }

// LogValue reports o without credentials.
func (o Options) LogValue() slog.Value {
	r, _ := parseRemote(o.URL)
	return slog.GroupValue(
		slog.String("url", r.url),
		slog.String("ref", o.Ref),
		slog.String("cacheDir", o.CacheDir),
		slog.Any("auth", o.Auth),
	)
}

// Snapshot is one published revision: a plain directory of the commit's
// files (no .git) that is never modified after Fetch returns it.
type Snapshot struct {
	// Dir is <CacheDir>/snapshots/<commit sha>. It stays until
	// Options.KeepSnapshots newer revisions have been published.
	Dir string
	// Revision is "<branch or tag>@sha1:<hex>", or "sha1:<hex>" for a
	// commit Ref, as Flux writes it.
	Revision string
}

// Source fetches a git repository and publishes snapshots of one ref.
// Its methods may be called concurrently; Fetch calls run one at a time.
type Source struct {
	remote     remote
	ref        refSpec
	cacheDir   string
	depth      int // 0: full history
	timeout    time.Duration
	keep       int
	auth       transport.AuthMethod
	verifyKeys []string
	limits     limits
	redact     *redactor
	log        *slog.Logger

	// sem is held by the goroutine doing a fetch. It outlives a Fetch call
	// whose ctx ended first, so the cache is never written by two at once.
	sem chan struct{}
	// verified lists commits whose signature passed, guarded by sem.
	verified map[plumbing.Hash]bool
	// checked lists the snapshots compared with their commit (or written
	// from it) by this process, so a resync does not hash them again;
	// cloneChecked says the clone's packs were checked. Guarded by sem.
	checked      map[plumbing.Hash]bool
	cloneChecked bool
	// onCheck, set only by tests, is called for every snapshot checked
	// against its commit.
	onCheck func(dir string)
	// faults, set only by tests, wraps the cache storage a fetch writes to,
	// to fail writes that a real disk fails only when full at one moment.
	faults func(storage.Storer) storage.Storer
}

// New checks opts and returns a Source. It parses credentials, keys and the
// ref but does no I/O beyond a temp file for known_hosts: the first Fetch
// clones.
func New(opts Options) (*Source, error) {
	r, err := parseRemote(opts.URL)
	if err != nil {
		return nil, err
	}
	s := &Source{
		remote:     r,
		cacheDir:   opts.CacheDir,
		depth:      positiveOr(opts.Depth, 1),
		timeout:    positiveOr(opts.Timeout, 60*time.Second),
		keep:       positiveOr(opts.KeepSnapshots, 2),
		verifyKeys: opts.VerifyKeys,
		redact:     newRedactor(append(r.secrets(), opts.Auth.secrets()...)...),
		log:        opts.Logger,
		sem:        make(chan struct{}, 1),
		verified:   map[plumbing.Hash]bool{},
		checked:    map[plumbing.Hash]bool{},
		limits: limits{
			fetchSize:     positiveOr(opts.MaxFetchSize, DefaultMaxFetchSize),
			refsSize:      positiveOr(opts.MaxRefsSize, DefaultMaxRefsSize),
			objectSize:    positiveOr(opts.MaxObjectSize, DefaultMaxObjectSize),
			objects:       positiveOr(opts.MaxObjects, DefaultMaxObjects),
			snapshotSize:  positiveOr(opts.MaxSnapshotSize, DefaultMaxSnapshotSize),
			snapshotFiles: positiveOr(opts.MaxSnapshotFiles, DefaultMaxSnapshotFiles),
		},
	}
	if s.ref, err = parseRef(opts.Ref); err != nil {
		return nil, fmt.Errorf("%s: %w", r.url, err)
	}
	if s.cacheDir == "" {
		sum := sha256.Sum256([]byte(r.url + "\x00" + opts.Ref))
		s.cacheDir = filepath.Join(os.TempDir(), "gitopsd-git-"+hex.EncodeToString(sum[:8]))
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if err := checkKeys(opts.VerifyKeys); err != nil {
		return nil, s.wrap("verify keys", err)
	}
	if s.auth, err = transportAuth(r, opts.Auth, opts.InsecureSkipHostKeyCheck, s.timeout); err != nil {
		return nil, s.wrap("auth", err)
	}
	if b, ok := s.auth.(*githttp.BasicAuth); ok { // what is sent, as a server may echo it
		s.redact = newRedactor(append(r.secrets(), append(opts.Auth.secrets(), basicSecrets(b.Username, b.Password)...)...)...)
	}
	return s, nil
}

// positiveOr applies the Options convention: zero means the default,
// negative means none (0: full depth, no timeout, no old snapshots, no
// limit).
func positiveOr[T int | int64 | time.Duration](v, def T) T {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

// String is the URL without credentials and the ref, e.g.
// "https://github.com/org/repo.git (ref main)".
func (s *Source) String() string {
	return s.remote.url + " (ref " + s.ref.String() + ")"
}

// LogValue reports the URL without credentials and the ref.
func (s *Source) LogValue() slog.Value {
	return slog.GroupValue(slog.String("url", s.remote.url), slog.String("ref", s.ref.String()))
}

// fetchError is an error whose message names the source and stage and has
// every known secret cut out. Unwrap keeps errors.Is working for callers
// (context.Canceled is shutdown, not failure).
type fetchError struct {
	msg string
	err error
}

func (e *fetchError) Error() string { return e.msg }
func (e *fetchError) Unwrap() error { return e.err }

// wrap names the source and stage in err and scrubs err's text (see
// redactor.scrub): every error a Source returns passes here. The name is
// built from the credential-free URL, so only err needs scrubbing.
func (s *Source) wrap(stage string, err error) error {
	return &fetchError{msg: fmt.Sprintf("%s: %s: %s", s, stage, s.redact.scrub(err.Error())), err: err}
}

// opContext bounds one network operation by Options.Timeout.
func (s *Source) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, s.timeout)
}
