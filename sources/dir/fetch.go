package dir

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"time"
)

// racyWindow is how recent a file's timestamps may be for Fetch not to
// keep its hash for the next Fetch. A file changed again right after Fetch
// read it, within the granularity of its timestamps and at the same size,
// would show the same stat and keep a stale hash: the "racy git" problem.
// git's answer is this one: an entry whose timestamps are not older than
// the moment it was recorded is not trusted. Two seconds covers the
// coarsest timestamps in use (FAT's) and the lag of the kernel's coarse
// clock.
const racyWindow = 2 * time.Second

// Fetch resolves Path and hashes the tree it points to, as
// Snapshot.Revision describes. It reads only inside that tree: symlinks
// are hashed by their target string, never followed; pipes, sockets and
// devices are never opened; ignored directories are not listed.
//
// A regular file whose stat (size, mtime, ctime, inode and device) is what
// it was at the latest Fetch keeps its hash from then, unread, so that a
// Fetch of an unchanged tree costs a listing per directory and no reads.
// A file whose mtime or ctime is within two seconds of a Fetch is read
// again by the next one, so that an edit right after a Fetch is seen
// however coarse the file system's timestamps.
//
// It fails, naming Path, when the revision would cover more than MaxFiles
// entries or MaxBytes of file content. The tree is read as it is: an edit
// during Fetch may give a revision of neither state, and the edit's own
// signal brings another Fetch.
func (s *Source) Fetch(ctx context.Context) (Snapshot, error) {
	dir, err := s.Dir()
	if err != nil {
		return Snapshot{}, err
	}
	sum := sha256.New()
	if err := s.hash(ctx, dir, sum); err != nil {
		return Snapshot{}, fmt.Errorf("%s: %w", s.path, err)
	}
	return Snapshot{Dir: dir, Revision: "sha256:" + hex.EncodeToString(sum.Sum(nil))}, nil
}

// hash writes the records of the tree at dir to sum, and keeps the walk's
// file hashes for the next call.
func (s *Source) hash(ctx context.Context, dir string, sum io.Writer) error {
	start := time.Now() // before any stat; see racyWindow
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()

	s.mu.Lock()
	prev := s.hashes
	s.mu.Unlock()
	w := walk{
		ctx:      ctx,
		root:     root,
		fsys:     root.FS(),
		maxFiles: s.maxFiles,
		maxBytes: s.maxBytes,
		trusted:  start.Add(-racyWindow).UnixNano(),
		prev:     prev,
		next:     make(map[string]fileHash, len(prev)),
		trace:    s.trace,
		sum:      sum,
	}
	if err := w.dir(".", nil, nil); err != nil {
		return err
	}
	// Concurrent calls each keep a whole walk's hashes; the last one wins.
	s.mu.Lock()
	s.hashes = w.next
	s.mu.Unlock()
	return nil
}

// statKey is what a file's stat must keep for its cached hash to hold.
// ctime and the inode change with any write, rename over or chmod, even
// one that sets the mtime back, as rsync -t and tar do.
type statKey struct {
	size         int64
	mtime, ctime int64 // nanoseconds since the epoch
	ino, dev     uint64
}

// fileHash is what Fetch keeps of one regular file between walks.
type fileHash struct {
	key   statKey
	sum   string // hex sha256 of the content
	rules []rule // a .gitignore's
}

// walk is the state of one Fetch's walk of the tree.
type walk struct {
	ctx      context.Context
	root     *os.Root
	fsys     fs.FS
	maxFiles int
	maxBytes int64
	trusted  int64                 // a file changed before this, in Unix ns, may be cached
	prev     map[string]fileHash   // from the latest walk; read only
	next     map[string]fileHash   // this walk's, for the next
	trace    func(op, name string) // see Source.trace

	sum   io.Writer
	files int
	bytes int64
}

// dir adds the entries below the directory name, whose path elements are
// elems, given the ignore rules of the directories above, shallowest
// first. It visits entries in lexical order, each directory just before
// its own entries, as fs.WalkDir does; that makes the hash deterministic.
//
// elems and sets are appended to for each entry and for the directory's
// own rules: one sibling's append overwrites the previous sibling's,
// which is done with by then, since the walk is depth first.
func (w *walk) dir(name string, elems []string, sets []ruleSet) error {
	if w.trace != nil {
		w.trace("list", name)
	}
	entries, err := fs.ReadDir(w.fsys, name)
	if err != nil {
		return err
	}
	// The directory's .gitignore applies to all of its entries, so it is
	// read first. As git does, it is read even when it ignores itself, and
	// only when it is a regular file.
	var ignoreFile *fileHash
	if i, ok := slices.BinarySearchFunc(entries, ".gitignore", func(d fs.DirEntry, n string) int {
		return strings.Compare(d.Name(), n)
	}); ok && entries[i].Type().IsRegular() {
		h, err := w.file(entries[i], join(name, ".gitignore"))
		if err != nil {
			return err
		}
		ignoreFile = &h
		if len(h.rules) > 0 {
			sets = append(sets, ruleSet{depth: len(elems), rules: h.rules})
		}
	}

	for _, d := range entries {
		if err := w.ctx.Err(); err != nil {
			return err
		}
		if d.Name() == ".git" {
			// A .git directory, or the .git file of a worktree, which holds
			// a path that differs between checkouts of the same content.
			continue
		}
		rel := join(name, d.Name())
		sub := append(elems, d.Name())
		if ignored(sets, sub, d.IsDir()) {
			continue
		}
		w.files++
		if w.files > w.maxFiles {
			return fmt.Errorf("more than %d files (MaxFiles)", w.maxFiles)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		mode := info.Mode()
		switch {
		case mode.IsRegular():
			var h fileHash
			if d.Name() == ".gitignore" && ignoreFile != nil {
				h = *ignoreFile
			} else if h, err = w.file(d, rel); err != nil {
				return err
			}
			w.record('f', mode, rel, h.sum)
		case mode&fs.ModeSymlink != 0:
			target, err := fs.ReadLink(w.fsys, rel)
			if err != nil {
				return err
			}
			w.record('l', mode, rel, target)
		case mode.IsDir():
			w.record('d', mode, rel, "")
			if err := w.dir(rel, sub, sets); err != nil {
				return err
			}
		default:
			// Pipes, sockets and devices: their presence and mode only, since
			// opening a device may act on it and reading a pipe would block.
			w.record('o', mode, rel, "")
		}
	}
	return nil
}

// join returns the relative path of name in the directory dir.
func join(dir, name string) string {
	if dir == "." {
		return name
	}
	return dir + "/" + name
}

// record writes one entry. Fields end in NUL, which no name or link target
// holds, so no two different trees write the same bytes.
func (w *walk) record(kind byte, mode fs.FileMode, name, value string) {
	perm := mode & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
	if kind == 'l' {
		perm = 0 // a link's own mode means nothing on Linux and differs on macOS
	}
	fmt.Fprintf(w.sum, "%c\x00%o\x00%s\x00%s\x00", kind, uint32(perm), name, value)
}

// file returns the hash of the regular file d at name, and its rules when
// it is a .gitignore, counting its size against MaxBytes. It reuses the
// latest walk's hash when the stat is unchanged, and reads the file
// otherwise.
func (w *walk) file(d fs.DirEntry, name string) (fileHash, error) {
	info, err := d.Info()
	if err != nil {
		return fileHash{}, err
	}
	left := w.maxBytes - w.bytes
	if key, ok := keyOf(info); ok {
		if h, ok := w.prev[name]; ok && h.key == key {
			if key.size > left {
				return fileHash{}, w.tooManyBytes(name)
			}
			w.bytes += key.size
			w.next[name] = h
			return h, nil
		}
	}

	if w.trace != nil {
		w.trace("read", name)
	}
	f, err := w.root.OpenFile(name, openFlags, 0)
	if err != nil {
		return fileHash{}, err
	}
	defer f.Close()
	// The key comes from the open file: it describes what is read even
	// when the name was replaced since it was listed.
	fi, err := f.Stat()
	if err != nil {
		return fileHash{}, fmt.Errorf("%s: %w", name, err)
	}
	if !fi.Mode().IsRegular() {
		return fileHash{}, fmt.Errorf("%s: replaced during fetch by a %v", name, fi.Mode().Type())
	}
	parse := path.Base(name) == ".gitignore"
	sum := sha256.New()
	var content bytes.Buffer
	dst := io.Writer(sum)
	if parse {
		dst = io.MultiWriter(sum, &content)
	}
	n, err := io.Copy(dst, io.LimitReader(f, left+1))
	if err != nil {
		return fileHash{}, fmt.Errorf("%s: %w", name, err)
	}
	if n > left {
		return fileHash{}, w.tooManyBytes(name)
	}
	w.bytes += n
	h := fileHash{sum: hex.EncodeToString(sum.Sum(nil))}
	if parse {
		h.rules = parseIgnore(content.String())
	}
	// Cached only when the stat is old enough that a later change must
	// change it (see racyWindow), and the file did not grow or shrink
	// while it was read.
	if key, ok := keyOf(fi); ok && key.size == n && key.mtime < w.trusted && key.ctime < w.trusted {
		h.key = key
		w.next[name] = h
	}
	return h, nil
}

func (w *walk) tooManyBytes(name string) error {
	return fmt.Errorf("more than %d bytes (MaxBytes) at %s", w.maxBytes, name)
}
