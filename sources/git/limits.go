package git

import (
	"bufio"
	"compress/zlib"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/hash"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/storage"
)

// Defaults of the Options bounds; see the fields for why each exists.
const (
	DefaultMaxFetchSize     = 512 << 20
	DefaultMaxRefsSize      = 32 << 20
	DefaultMaxObjectSize    = 32 << 20
	DefaultMaxObjects       = 500_000
	DefaultMaxSnapshotSize  = 1 << 30
	DefaultMaxSnapshotFiles = 100_000
)

// limitError reports a bound that a repository went over. Its message names
// the Options field, so an operator knows what to raise.
type limitError struct {
	what   string // what went over: "pack", "blob of 4194304 bytes"
	limit  int64
	unit   string // "byte", "object", "entry"
	option string // the Options field
}

func (e *limitError) Error() string {
	return fmt.Sprintf("%s is over the %d-%s limit (%s)", e.what, e.limit, e.unit, e.option)
}

// limits are a Source's bounds; 0 means unlimited.
type limits struct {
	fetchSize     int64 // MaxFetchSize
	refsSize      int64 // MaxRefsSize
	objectSize    int64 // MaxObjectSize
	objects       int64 // MaxObjects
	snapshotSize  int64 // MaxSnapshotSize
	snapshotFiles int64 // MaxSnapshotFiles
}

func over(limit, n int64) bool { return limit > 0 && n > limit }

// The bytes of a fetch are bounded in two places, because go-git has no hook
// per remote into its transports:
//
//   - every transport hands the pack to the storer's PackfileWriter, so
//     limitedStorer counts the pack there and checks each object's header
//     before go-git's indexer (which inflates each object into memory) can
//     see that object: the single point that covers http, ssh, git and file;
//   - for http(s) a wrapper around go-git's client (installed once, below)
//     also counts every response body, so the ref advertisement and the
//     shallow and ACK lines, which go-git decodes before the pack, and the
//     progress messages among it are bounded too. It only acts on requests
//     whose context carries a budget, which only this package sets.

// limitedStorer is the cache repository's storage whose PackfileWriter
// enforces the pack bounds. Everything else passes through.
//
// A refused pack ends the fetch by cancelling its context (abort), not by
// failing the write: go-git's file transport closes by waiting for
// git-upload-pack to exit, which never happens while the rest of the pack
// sits unread in the pipe, so a fetch that stops reading on a write error
// hangs for good. Cancelled, go-git's next read kills the process (ssh and
// http close their stream either way). The write that went over and any
// after it are discarded; refused tells fetchRefs why the fetch ended.
type limitedStorer struct {
	storage.Storer
	limits limits
	abort  context.CancelCauseFunc
	guard  *packGuard // the last PackfileWriter, read once the fetch returns
}

func (s *limitedStorer) PackfileWriter() (io.WriteCloser, error) {
	pw, ok := s.Storer.(storer.PackfileWriter)
	if !ok {
		return nil, errors.New("cache storage cannot write packs")
	}
	w, err := pw.PackfileWriter()
	if err != nil {
		return nil, err
	}
	s.guard = newPackGuard(w, s.limits)
	s.guard.abort = s.abort
	return s.guard, nil
}

// refused is the error that made the last pack writer abort the fetch.
func (s *limitedStorer) refused() error {
	if s.guard == nil || s.guard.abort == nil {
		return nil
	}
	return s.guard.err
}

// packGuard passes a pack to the cache's pack writer once the bytes are
// counted and every object header in them checked. The check runs in a
// goroutine (walkPack) that reads the same bytes; Write hands it each chunk
// and forwards the chunk only when the walker has consumed all of it and
// asks for more. Because go-git's writer gets nothing the walker has not
// seen, it never reads the header of an object the walker refused, let alone
// inflates the object.
type packGuard struct {
	w      io.WriteCloser
	limits limits
	n      int64
	err    error                   // the first error
	abort  context.CancelCauseFunc // if set, called with err, and Write then succeeds

	chunks  chan []byte
	need    chan struct{}
	done    chan struct{}
	walkErr error // set before done is closed
}

func newPackGuard(w io.WriteCloser, l limits) *packGuard {
	g := &packGuard{
		w:      w,
		limits: l,
		chunks: make(chan []byte),
		need:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	go func() {
		defer close(g.done)
		g.walkErr = walkPack(&chunkReader{chunks: g.chunks, need: g.need}, l)
	}()
	return g
}

func (g *packGuard) Write(p []byte) (int, error) {
	if g.err == nil && len(p) > 0 {
		g.err = g.write(p)
		if g.err != nil && g.abort != nil {
			g.abort(g.err)
		}
	}
	if g.err != nil && g.abort == nil {
		return 0, g.err
	}
	return len(p), nil // written, or discarded after an abort
}

func (g *packGuard) write(p []byte) error {
	if over(g.limits.fetchSize, g.n+int64(len(p))) {
		return &limitError{what: "pack", limit: g.limits.fetchSize, unit: "byte", option: "MaxFetchSize"}
	}
	g.n += int64(len(p))
	if err := g.check(p); err != nil {
		return err
	}
	_, err := g.w.Write(p)
	return err
}

// check has the walker read p and returns once it has read all of it, or
// has stopped: with an error, or at the end of the pack (any trailing bytes
// then pass unchecked, counted still; go-git ignores them).
func (g *packGuard) check(p []byte) error {
	select {
	case g.chunks <- p:
	case <-g.done:
		return g.walkErr
	}
	select {
	case <-g.need:
		return nil
	case <-g.done:
		return g.walkErr
	}
}

// Close ends the walk and closes go-git's writer, which indexes and keeps
// the pack only when it is whole. After an error it leaves its temp file
// behind; Source.fetchRefs removes it.
func (g *packGuard) Close() error {
	close(g.chunks)
	<-g.done
	err := g.w.Close()
	if g.err != nil {
		return g.err
	}
	if g.walkErr != nil && g.n > 0 {
		return g.walkErr
	}
	return err
}

// chunkReader gives walkPack the chunks packGuard.Write sends, and tells
// Write when one is used up.
type chunkReader struct {
	chunks  <-chan []byte
	need    chan<- struct{}
	cur     []byte
	started bool
}

func (r *chunkReader) Read(b []byte) (int, error) {
	if len(r.cur) == 0 {
		if r.started {
			r.need <- struct{}{}
		}
		r.started = true
		c, ok := <-r.chunks
		if !ok {
			return 0, io.EOF
		}
		r.cur = c
	}
	n := copy(b, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

var errMalformedPack = errors.New("malformed pack")

// walkPack reads a pack (format v2 or v3: "PACK", version, object count,
// the objects, a trailing checksum) and refuses it as soon as a header shows
// it over l: more than l.objects objects, or an object whose inflated size,
// or for a delta the size of the object it makes, is over l.objectSize.
// Both sizes are known before the object is inflated: the type-and-size
// header comes first, and a delta's inflated data starts with the base and
// result sizes. walkPack inflates each object it allows into io.Discard,
// the only way to find where the next one starts (a pack stores no
// compressed lengths), and checks that it inflates to its declared size,
// which is what makes the header a bound.
func walkPack(r io.Reader, l limits) error {
	// bufio.Reader is an io.ByteReader, so flate reads exactly the
	// compressed stream and no further.
	br := bufio.NewReaderSize(r, 32<<10)
	var head [12]byte
	if _, err := io.ReadFull(br, head[:]); err != nil {
		return packErr(err)
	}
	if string(head[:4]) != "PACK" {
		return fmt.Errorf("%w: bad signature %q", errMalformedPack, head[:4])
	}
	if v := binary.BigEndian.Uint32(head[4:8]); v != 2 && v != 3 {
		return fmt.Errorf("%w: unsupported version %d", errMalformedPack, v)
	}
	count := int64(binary.BigEndian.Uint32(head[8:12]))
	if over(l.objects, count) {
		return &limitError{what: fmt.Sprintf("pack of %d objects", count), limit: l.objects, unit: "object", option: "MaxObjects"}
	}
	var zr io.ReadCloser
	for i := int64(0); i < count; i++ {
		typ, size, err := readObjectHeader(br)
		if err != nil {
			return err
		}
		if over(l.objectSize, size) {
			return &limitError{what: fmt.Sprintf("%s of %d bytes", objectKind(typ), size), limit: l.objectSize, unit: "byte", option: "MaxObjectSize"}
		}
		if zr == nil {
			zr, err = zlib.NewReader(br)
		} else {
			err = zr.(zlib.Resetter).Reset(br, nil)
		}
		if err != nil {
			return packErr(err)
		}
		data := &io.LimitedReader{R: zr, N: size + 1}
		if typ.IsDelta() {
			if _, err := readDeltaSize(data); err != nil { // base size
				return err
			}
			result, err := readDeltaSize(data)
			if err != nil {
				return err
			}
			if over(l.objectSize, result) {
				return &limitError{what: fmt.Sprintf("delta result of %d bytes", result), limit: l.objectSize, unit: "byte", option: "MaxObjectSize"}
			}
		}
		if _, err := io.Copy(io.Discard, data); err != nil {
			return packErr(err)
		}
		if n := size + 1 - data.N; n != size {
			return fmt.Errorf("%w: %s declared as %d bytes inflates to %d", errMalformedPack, objectKind(typ), size, n)
		}
	}
	if _, err := io.ReadFull(br, make([]byte, hash.Size)); err != nil {
		return packErr(err)
	}
	return nil
}

func packErr(err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%w: %w", errMalformedPack, err)
}

// readObjectHeader reads an object's type and inflated size, and skips a
// delta's base reference.
func readObjectHeader(br *bufio.Reader) (plumbing.ObjectType, int64, error) {
	c, err := br.ReadByte()
	if err != nil {
		return 0, 0, packErr(err)
	}
	typ := plumbing.ObjectType((c >> 4) & 7)
	size := uint64(c & 15)
	for shift := uint(4); c&0x80 != 0; shift += 7 {
		if shift > 56 {
			return 0, 0, fmt.Errorf("%w: object size overflows", errMalformedPack)
		}
		if c, err = br.ReadByte(); err != nil {
			return 0, 0, packErr(err)
		}
		size |= uint64(c&0x7f) << shift
	}
	switch typ {
	case plumbing.CommitObject, plumbing.TreeObject, plumbing.BlobObject, plumbing.TagObject:
	case plumbing.OFSDeltaObject:
		for n := 0; ; n++ { // base offset, a varint
			if n == 10 {
				return 0, 0, fmt.Errorf("%w: delta offset overflows", errMalformedPack)
			}
			if c, err = br.ReadByte(); err != nil {
				return 0, 0, packErr(err)
			}
			if c&0x80 == 0 {
				break
			}
		}
	case plumbing.REFDeltaObject:
		if _, err := br.Discard(hash.Size); err != nil { // base object id
			return 0, 0, packErr(err)
		}
	default:
		return 0, 0, fmt.Errorf("%w: object type %d", errMalformedPack, typ)
	}
	return typ, int64(size), nil
}

// readDeltaSize reads one of the two sizes a delta's data starts with.
func readDeltaSize(r io.Reader) (int64, error) {
	var b [1]byte
	var size uint64
	for shift := uint(0); ; shift += 7 {
		if shift > 56 {
			return 0, fmt.Errorf("%w: delta size overflows", errMalformedPack)
		}
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, packErr(err)
		}
		size |= uint64(b[0]&0x7f) << shift
		if b[0]&0x80 == 0 {
			return int64(size), nil
		}
	}
}

func objectKind(t plumbing.ObjectType) string {
	if t.IsDelta() {
		return "delta"
	}
	return t.String()
}

// cleanPackTemps removes what go-git's pack writer leaves in the cache
// repository when a fetch fails (it keeps its temp file on a parse error)
// or the process dies during one: temp files, and a pack or index without
// its other half. go-git writes a pack's index before it renames the pack
// into place, so a write that failed there (a full disk) leaves an index,
// maybe partial, which go-git would later keep as the index of that pack.
// The caller holds the cache lock.
func cleanPackTemps(repoDir string) error {
	dir := filepath.Join(repoDir, "objects", "pack")
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	have := map[string]bool{}
	for _, e := range entries {
		have[e.Name()] = true
	}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		base, ext := strings.TrimSuffix(name, filepath.Ext(name)), filepath.Ext(name)
		orphan := strings.HasPrefix(name, "pack-") &&
			(ext == ".idx" && !have[base+".pack"] || ext == ".pack" && !have[base+".idx"])
		if strings.HasPrefix(name, "tmp_pack_") || strings.HasPrefix(name, "tmp_idx_") || orphan {
			errs = append(errs, os.Remove(filepath.Join(dir, name)))
		}
	}
	return errors.Join(errs...)
}
