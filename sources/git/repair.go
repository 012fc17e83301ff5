package git

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// A cache is trusted only as far as it can be checked against the commit
// it claims to hold. A snapshot whose files were truncated, removed or
// added to would build fewer objects than the commit declares, and the
// reconciler would prune the difference; a clone whose pack was truncated
// fails every checkout that needs an object from the lost part, and go-git
// never fetches a pack again whose name (its checksum) is already on disk.
// So, once per process for each snapshot and for the clone:
//
//   - the clone's packs are checked against their checksums (checkPacks),
//     the whole pack and its index, before anything is read from them;
//   - a published snapshot is compared with the commit's tree (checkTree):
//     every entry's kind and executable bit, every file's git blob hash
//     computed from its bytes, every symlink's target, and no entry the
//     tree does not have; each object the tree names must be in the clone;
//   - a snapshot being written is checked as it is written: each file's
//     bytes hash to the blob the tree names (writeBlob).
//
// A snapshot that differs is written again from the clone; a clone that
// cannot produce the commit (a checksum mismatch, an object missing or
// unreadable) is removed and cloned again (Source.fetch).

// cloneError is a failure of the cache clone to produce an object a commit
// needs: missing, unreadable, or not what its hash says. It is repaired by
// cloning again, not retried.
type cloneError struct{ err error }

func (e *cloneError) Error() string { return e.err.Error() }
func (e *cloneError) Unwrap() error { return e.err }

// fromClone marks err, returned while reading the clone, as a cloneError.
// A limit of Options is not the clone's fault; nil stays nil.
func fromClone(err error) error {
	var le *limitError
	var ce *cloneError
	if err == nil || errors.As(err, &le) || errors.As(err, &ce) {
		return err
	}
	return &cloneError{err}
}

// cloneReader marks the errors of reading an object from the clone.
type cloneReader struct{ r io.Reader }

func (r cloneReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		err = fromClone(err)
	}
	return n, err
}

// mismatchError says where a published snapshot differs from its commit.
type mismatchError struct {
	path string // inside the snapshot; "." for its root
	what string
}

func (e *mismatchError) Error() string { return e.path + ": " + e.what }

// repair is what one Fetch found broken in the cache and rebuilt, logged
// once as "git cache repaired".
type repair struct {
	what   []string // "clone", "snapshot"
	reason error    // the first thing found
}

func (r *repair) add(what string, reason error) {
	r.what = append(r.what, what)
	if r.reason == nil {
		r.reason = reason
	}
}

// logRepair writes the one record of r, if anything was repaired.
func (s *Source) logRepair(ctx context.Context, r *repair, h plumbing.Hash) {
	if len(r.what) == 0 {
		return
	}
	s.log.WarnContext(ctx, "git cache repaired", "source", s, "commit", h.String(),
		"what", strings.Join(r.what, " and "), "reason", s.reasonText(r))
}

// reasonText is r's reason, short: without the source, which the record
// names apart, scrubbed like an error (it may quote go-git's words) and
// cut to maxExcerpt.
func (s *Source) reasonText(r *repair) string {
	return truncate(s.redact.scrub(strings.TrimPrefix(r.reason.Error(), s.String()+": ")), maxExcerpt)
}

// checkSnapshot compares the published snapshot dir with tree, read from
// st. It returns a *mismatchError when they differ, a *cloneError when st
// cannot produce tree, or nil when dir holds exactly tree's files.
func (s *Source) checkSnapshot(ctx context.Context, dir string, st storer.EncodedObjectStorer, tree *object.Tree) error {
	if s.onCheck != nil {
		s.onCheck(dir)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return &mismatchError{path: ".", what: err.Error()}
	}
	defer root.Close()
	c := &treeCheck{ctx: ctx, st: st, b: &snapshotBudget{limits: s.limits}, packed: readPackNames(s.repoDir())}
	return c.tree(root, tree, ".", 0)
}

// treeCheck walks a tree and the snapshot written from it side by side,
// one directory at a time (each an os.Root, so that every file operation
// names one path component and none follows a symlink out).
type treeCheck struct {
	ctx    context.Context
	st     storer.EncodedObjectStorer
	b      *snapshotBudget
	packed packNames
}

// has reports whether the clone holds h: in a pack index, else (loose, or
// in a pack written since the indexes were read) as go-git finds it, which
// costs a few syscalls per object for the loose lookup it tries first.
func (c *treeCheck) has(h plumbing.Hash) error {
	if c.packed.has(h) {
		return nil
	}
	return c.st.HasEncodedObject(h)
}

// tree compares the directory root, at dir in the snapshot, with tree.
func (c *treeCheck) tree(root *os.Root, tree *object.Tree, dir string, depth int) error {
	if depth > maxTreeDepth {
		return fmt.Errorf("%s: tree deeper than %d levels", dir, maxTreeDepth)
	}
	have, err := c.entries(root, tree, dir)
	if err != nil {
		return err
	}
	for _, e := range tree.Entries {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		name := path.Join(dir, e.Name)
		if err := checkEntryName(e.Name); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if err := c.b.entry(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		d, ok := have[e.Name]
		if !ok {
			return &mismatchError{path: name, what: "missing"}
		}
		if e.Mode != filemode.Submodule {
			if err := c.has(e.Hash); err != nil {
				return &cloneError{fmt.Errorf("%s: %s: %w", name, e.Hash, err)}
			}
		}
		if err := c.entry(root, d, e, name, depth); err != nil {
			return err
		}
	}
	return nil
}

// entries lists root, and reports an entry that tree does not have.
func (c *treeCheck) entries(root *os.Root, tree *object.Tree, dir string) (map[string]fs.DirEntry, error) {
	f, err := root.Open(".")
	if err != nil {
		return nil, &mismatchError{path: dir, what: err.Error()}
	}
	defer f.Close()
	list, err := f.ReadDir(-1)
	if err != nil {
		return nil, &mismatchError{path: dir, what: err.Error()}
	}
	want := make(map[string]bool, len(tree.Entries))
	for _, e := range tree.Entries {
		want[e.Name] = true
	}
	have := make(map[string]fs.DirEntry, len(list))
	for _, d := range list {
		if !want[d.Name()] {
			return nil, &mismatchError{path: path.Join(dir, d.Name()), what: "not in the commit"}
		}
		have[d.Name()] = d
	}
	return have, nil
}

func (c *treeCheck) entry(root *os.Root, d fs.DirEntry, e object.TreeEntry, name string, depth int) error {
	switch e.Mode {
	case filemode.Dir, filemode.Submodule:
		if !d.IsDir() {
			return &mismatchError{path: name, what: "not a directory"}
		}
		sub, err := root.OpenRoot(e.Name)
		if err != nil {
			return &mismatchError{path: name, what: err.Error()}
		}
		defer sub.Close()
		if e.Mode == filemode.Submodule {
			_, err := c.entries(sub, &object.Tree{}, name)
			return err
		}
		tree, err := c.b.tree(c.st, e.Hash)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return c.tree(sub, tree, name, depth+1)
	case filemode.Regular, filemode.Deprecated, filemode.Executable:
		info, err := d.Info()
		if err != nil || !info.Mode().IsRegular() {
			return &mismatchError{path: name, what: "not a regular file"}
		}
		if exec := info.Mode()&0o100 != 0; exec != (e.Mode == filemode.Executable) {
			return &mismatchError{path: name, what: fmt.Sprintf("mode %v, the commit's %v", info.Mode().Perm(), e.Mode)}
		}
		if err := c.b.file(info.Size()); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return c.file(root, e, name, info.Size())
	case filemode.Symlink:
		target, err := root.Readlink(e.Name)
		if err != nil || d.Type() != fs.ModeSymlink {
			return &mismatchError{path: name, what: "not a symlink"}
		}
		if plumbing.ComputeHash(plumbing.BlobObject, []byte(target)) != e.Hash {
			return &mismatchError{path: name, what: "symlink target differs from the commit"}
		}
		return nil
	}
	return fmt.Errorf("%s: unsupported file mode %s", name, e.Mode)
}

// file compares the blob hash of the file's bytes with e's.
func (c *treeCheck) file(root *os.Root, e object.TreeEntry, name string, size int64) error {
	f, err := root.Open(e.Name)
	if err != nil {
		return &mismatchError{path: name, what: err.Error()}
	}
	defer f.Close()
	hasher := plumbing.NewHasher(plumbing.BlobObject, size)
	n, err := io.Copy(hasher, io.LimitReader(f, size+1))
	switch {
	case err != nil:
		return &mismatchError{path: name, what: err.Error()}
	case n != size:
		return &mismatchError{path: name, what: "changed while read"}
	case hasher.Sum() != e.Hash:
		return &mismatchError{path: name, what: fmt.Sprintf("%d bytes that differ from blob %s", size, e.Hash)}
	}
	return nil
}

// checkPacks checks every pack of the clone at repoDir against its
// checksum, and its index against its own: a pack's last 20 bytes are the
// SHA-1 of the rest, which the index repeats before its own checksum. It
// returns the first mismatch. A pack without its index, or an index
// without its pack, is cleanPackTemps's to remove, not a mismatch.
func checkPacks(repoDir string) error {
	dir := filepath.Join(repoDir, "objects", "pack")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, "pack-") || filepath.Ext(name) != ".pack" {
			continue
		}
		idx := strings.TrimSuffix(name, ".pack") + ".idx"
		want, count, err := readIndexTrailer(filepath.Join(dir, idx))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", idx, err)
		}
		if err := checkPack(filepath.Join(dir, name), want, count); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// readIndexTrailer checks a version 2 pack index against its checksum and
// returns the checksum of its pack and its object count.
func readIndexTrailer(name string) (pack []byte, count uint32, err error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, 0, err
	}
	const header, fanout = 8, 256 * 4
	if len(b) < header+fanout+2*sha1.Size || !bytes.Equal(b[:header], []byte("\xfftOc\x00\x00\x00\x02")) {
		return nil, 0, fmt.Errorf("not a version 2 pack index of %d bytes", len(b))
	}
	body, sum := b[:len(b)-sha1.Size], b[len(b)-sha1.Size:]
	if got := sha1.Sum(body); !bytes.Equal(got[:], sum) {
		return nil, 0, errors.New("index checksum mismatch")
	}
	count = binary.BigEndian.Uint32(b[header+fanout-4 : header+fanout])
	return body[len(body)-sha1.Size:], count, nil
}

// packNames are the object names of a clone's pack indexes, each index's
// sorted list of 20-byte names.
type packNames [][]byte

// readPackNames reads the names of every version 2 pack index of the
// clone at repoDir. Indexes it cannot read are left out: has then asks
// go-git, which will report them.
func readPackNames(repoDir string) packNames {
	const header, fanout = 8, 256 * 4
	idxs, _ := filepath.Glob(filepath.Join(repoDir, "objects", "pack", "pack-*.idx"))
	var p packNames
	for _, name := range idxs {
		b, err := os.ReadFile(name)
		if err != nil || len(b) < header+fanout || !bytes.Equal(b[:header], []byte("\xfftOc\x00\x00\x00\x02")) {
			continue
		}
		n := int(binary.BigEndian.Uint32(b[header+fanout-4 : header+fanout]))
		if len(b) < header+fanout+n*sha1.Size {
			continue
		}
		p = append(p, b[header+fanout:header+fanout+n*sha1.Size])
	}
	return p
}

func (p packNames) has(h plumbing.Hash) bool {
	for _, names := range p {
		n := len(names) / sha1.Size
		i := sort.Search(n, func(i int) bool { return bytes.Compare(names[i*sha1.Size:(i+1)*sha1.Size], h[:]) >= 0 })
		if i < n && bytes.Equal(names[i*sha1.Size:(i+1)*sha1.Size], h[:]) {
			return true
		}
	}
	return false
}

// checkPack checks a pack's header, object count and checksum.
func checkPack(name string, want []byte, count uint32) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	if info.Size() < 12+sha1.Size {
		return fmt.Errorf("truncated to %d bytes", info.Size())
	}
	var head [12]byte
	if _, err := io.ReadFull(f, head[:]); err != nil {
		return err
	}
	if string(head[:4]) != "PACK" || binary.BigEndian.Uint32(head[8:]) != count {
		return fmt.Errorf("header does not match its index of %d objects", count)
	}
	h := sha1.New()
	h.Write(head[:])
	if _, err := io.CopyN(h, f, info.Size()-12-sha1.Size); err != nil {
		return err
	}
	var sum [sha1.Size]byte
	if _, err := io.ReadFull(f, sum[:]); err != nil {
		return err
	}
	if got := h.Sum(nil); !bytes.Equal(got, sum[:]) || !bytes.Equal(sum[:], want) {
		return fmt.Errorf("checksum mismatch (%d bytes)", info.Size())
	}
	return nil
}
