package dir

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Fetch resolves Path and hashes the tree it points to. It reads only
// inside that tree: symlinks are hashed by their target string, never
// followed. It fails, naming Path, when the tree holds more than MaxFiles
// entries or MaxBytes of file content. The tree is read as it is: an edit
// during Fetch may give a revision of neither state, and the edit's own
// signal brings another Fetch.
func (s *Source) Fetch(ctx context.Context) (Snapshot, error) {
	dir, err := filepath.EvalSymlinks(s.abs)
	if err != nil {
		return Snapshot{}, fmt.Errorf("%s: resolve: %w", s.path, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return Snapshot{}, fmt.Errorf("%s: %w", s.path, err)
	}
	defer root.Close()

	t := treeHash{ctx: ctx, fsys: root.FS(), maxFiles: s.maxFiles, maxBytes: s.maxBytes, sum: sha256.New()}
	if err := fs.WalkDir(t.fsys, ".", t.entry); err != nil {
		return Snapshot{}, fmt.Errorf("%s: %w", s.path, err)
	}
	return Snapshot{Dir: dir, Revision: "sha256:" + hex.EncodeToString(t.sum.Sum(nil))}, nil
}

// treeHash accumulates the hash of one tree walk.
type treeHash struct {
	ctx      context.Context
	fsys     fs.FS
	maxFiles int
	maxBytes int64

	sum   hash.Hash
	files int
	bytes int64
}

// entry is the fs.WalkDirFunc that adds one entry to the hash. fs.WalkDir
// visits entries in lexical order, which makes the hash deterministic.
func (t *treeHash) entry(name string, d fs.DirEntry, err error) error {
	if err != nil {
		return err
	}
	if name == "." {
		return nil // the root's own mode is where it was checked out, not content
	}
	if err := t.ctx.Err(); err != nil {
		return err
	}
	if d.Name() == ".git" {
		// A .git directory, or the .git file of a worktree, which holds a
		// path that differs between checkouts of the same content.
		if d.IsDir() {
			return fs.SkipDir
		}
		return nil
	}
	t.files++
	if t.files > t.maxFiles {
		return fmt.Errorf("more than %d files (MaxFiles)", t.maxFiles)
	}
	info, err := d.Info()
	if err != nil {
		return err
	}
	mode := info.Mode()
	switch {
	case mode.IsRegular():
		sum, err := t.file(name)
		if err != nil {
			return err
		}
		t.record('f', mode, name, sum)
	case mode&fs.ModeSymlink != 0:
		target, err := fs.ReadLink(t.fsys, name)
		if err != nil {
			return err
		}
		t.record('l', mode, name, target)
	case mode.IsDir():
		t.record('d', mode, name, "")
	default:
		// Pipes, sockets and devices: their presence and mode only, since
		// reading a pipe would block.
		t.record('o', mode, name, "")
	}
	return nil
}

// record writes one entry. Fields end in NUL, which no name or link target
// holds, so no two different trees write the same bytes.
func (t *treeHash) record(kind byte, mode fs.FileMode, name, value string) {
	perm := mode & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
	if kind == 'l' {
		perm = 0 // a link's own mode means nothing on Linux and differs on macOS
	}
	fmt.Fprintf(t.sum, "%c\x00%o\x00%s\x00%s\x00", kind, uint32(perm), name, value)
}

// file returns the hex sha256 of the named file's content, counting its
// size against MaxBytes.
func (t *treeHash) file(name string) (string, error) {
	f, err := t.fsys.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	left := t.maxBytes - t.bytes
	n, err := io.Copy(h, io.LimitReader(f, left+1))
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	t.bytes += n
	if n > left {
		return "", fmt.Errorf("more than %d bytes (MaxBytes) at %s", t.maxBytes, name)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
