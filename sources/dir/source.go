package dir

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for the zero values of Options.
const (
	defaultDebounce = 500 * time.Millisecond
	defaultMaxFiles = 100000
	defaultMaxBytes = 1 << 30
)

// Snapshot is one fetched state of the directory.
type Snapshot struct {
	// Dir is the real directory the revision was computed from: Path with
	// every symlink resolved at fetch time. Build from Dir rather than Path,
	// so that a symlink swap between fetch and build cannot mix two trees.
	Dir string
	// Revision is "sha256:<hex>", a hash of the relative paths, modes,
	// file contents and symlink targets of the tree's entries: every entry
	// but .git and what the tree's .gitignore files ignore, which is what a
	// commit of the tree would hold.
	//
	// The .gitignore files are read as git reads them: each applies to its
	// own directory and below, a deeper one overriding a shallower one, and
	// an ignored directory is skipped whole, so that nothing below it can
	// be re-included. The excludes that are no part of the tree,
	// .git/info/exclude and the user's core.excludesFile, are not read, so
	// the same tree gives the same revision wherever it is checked out.
	//
	// A build that reads an ignored file, such as an ignored generated
	// secrets.env, still reads it from Dir, but a change to that file alone
	// does not change the revision.
	Revision string
}

// Options configure a Source. The zero value of each field but Path works.
type Options struct {
	// Path is the directory to serve. It may be a symlink to a directory,
	// as git-sync publishes (/git/current -> /git/.worktrees/<sha>): it is
	// resolved again on every Fetch, and a swap of the link is watched.
	Path string

	// Debounce is how long the tree must be quiet before Changed fires.
	// Editors and git checkouts write many files at once; one sync after
	// they settle is wanted, not one per file. A tree that never settles
	// still fires every ten Debounce periods. Zero means 500ms.
	Debounce time.Duration

	// MaxFiles bounds the number of entries (files, directories and
	// symlinks) the revision covers, so that a mistaken Path such as /
	// fails fast instead of walking a whole disk. Ignored entries do not
	// count. Zero means 100000.
	MaxFiles int

	// MaxBytes bounds the total size of the files whose content the
	// revision covers, and of the .gitignore files Fetch reads, for the
	// same reason. Ignored files do not count, and a file counts whether
	// Fetch reads it or reuses its hash from an earlier Fetch, so that the
	// bound does not depend on what came before. Zero means 1 GiB.
	MaxBytes int64
}

// Source is a local directory as a source of desired state. Fetch, Dir,
// String and Changed may be called from any goroutine, concurrently with
// each other and with Run.
type Source struct {
	path     string // as the user gave it, for String and errors
	abs      string // absolute and unresolved: the name whose swap is watched
	debounce time.Duration
	maxFiles int
	maxBytes int64

	changed chan struct{}
	running atomic.Bool

	mu     sync.Mutex
	hashes map[string]fileHash // by relative path, as of the latest walk; replaced, never modified

	// trace, when set by a test, is called with "read" and the relative
	// path before Fetch opens a file, and with "list" before it lists a
	// directory.
	trace func(op, name string)
}

// New returns a Source for opts.Path, which must exist and be a directory
// or a symlink to one.
func New(opts Options) (*Source, error) {
	if opts.Path == "" {
		return nil, errors.New("dir: path is required")
	}
	if opts.Debounce < 0 || opts.MaxFiles < 0 || opts.MaxBytes < 0 {
		return nil, fmt.Errorf("%s: Debounce, MaxFiles and MaxBytes must not be negative", opts.Path)
	}
	abs, err := filepath.Abs(opts.Path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", opts.Path, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", opts.Path, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s: not a directory", opts.Path)
	}
	s := &Source{
		path:     opts.Path,
		abs:      abs,
		debounce: cmp.Or(opts.Debounce, defaultDebounce),
		maxFiles: cmp.Or(opts.MaxFiles, defaultMaxFiles),
		maxBytes: cmp.Or(opts.MaxBytes, defaultMaxBytes),
		changed:  make(chan struct{}, 1),
	}
	return s, nil
}

// Dir returns Path with every symlink resolved, as Fetch would report it in
// Snapshot.Dir, without reading the tree: for a one-shot command, such as
// gitopsd build --dir, that needs no revision.
func (s *Source) Dir() (string, error) {
	dir, err := filepath.EvalSymlinks(s.abs)
	if err != nil {
		return "", fmt.Errorf("%s: resolve: %w", s.path, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return "", fmt.Errorf("%s: %w", s.path, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%s: not a directory", s.path)
	}
	return dir, nil
}

// String names the source as "dir:<path>", with Path as given.
func (s *Source) String() string { return "dir:" + s.path }

// Changed returns a channel that receives a value when the tree may have
// changed and a Fetch is due. Signals coalesce: however many changes happen
// before the receiver reads, it receives one value. Run sends one signal as
// soon as its watch is in place, so a change made before then is not
// missed. The channel is never closed.
func (s *Source) Changed() <-chan struct{} { return s.changed }

// notify signals Changed without blocking; a signal already pending covers
// this one.
func (s *Source) notify() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}
