package kustomize

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"

	"sigs.k8s.io/kustomize/api/konfig"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// confinedFS is the filesys.FileSystem that krusty gets for one build. It is
// read-only, and it resolves every path it is given (symlinks included) and
// refuses any that ends up outside the snapshot root, so that neither a
// symlink nor a "../" in a kustomization reaches the rest of the machine. It
// also enforces the read limits and, when a kustomization file or a builtin
// plugin configuration is read, refuses remote references in it before
// kustomize can act on them (see remote.go).
//
// kustomize sometimes swallows an error from its file system (it tries a
// resource as a file, then as a directory, and reports only the last error),
// so the first refusal is also kept in fatal: Build fails with it even when
// kustomize would have carried on or said something vaguer.
type confinedFS struct {
	root string // absolute and free of symlinks

	// cloneDir is the resolved temporary directory under which kustomize
	// clones remote bases ("kustomize-*" directories). Empty unless remote
	// bases are allowed, in which case reads there are allowed too.
	cloneDir string

	allowRemote bool
	maxFile     int64
	maxTotal    int64
	maxObjects  int
	maxDepth    int

	// secrets collects the secret values of what the build reads, so that
	// its error can be scrubbed of them (see Redactor).
	secrets *Redactor

	mu      sync.Mutex
	read    int64 // bytes read so far in this build
	objects int   // objects in the files read so far
	fatal   error // the first refusal, see above
	// preread holds the files countListed read and checked, by resolved
	// path, until kustomize reads them.
	preread map[string]prereadFile
}

// prereadFile is a file countListed read, with what checkYAML found in it.
type prereadFile struct {
	data  []byte
	stats yamlStats
}

var _ filesys.FileSystem = (*confinedFS)(nil)

// newConfinedFS returns a confinedFS for root, which must be absolute and
// free of symlinks. opts must have its defaults filled in.
func newConfinedFS(root string, opts Options) *confinedFS {
	c := &confinedFS{
		root:        root,
		allowRemote: opts.AllowRemoteBases,
		maxFile:     opts.MaxFileSize,
		maxTotal:    opts.MaxTotalRead,
		maxObjects:  opts.MaxObjects,
		maxDepth:    opts.MaxYAMLDepth,
		secrets:     &Redactor{},
		preread:     map[string]prereadFile{},
	}
	if opts.AllowRemoteBases {
		if tmp, err := filepath.EvalSymlinks(os.TempDir()); err == nil {
			c.cloneDir = tmp
		}
	}
	return c
}

// fatalErr returns the first refusal of the build, or nil.
func (c *confinedFS) fatalErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fatal
}

// refuse records err as the build's first refusal (if it is the first) and
// returns it.
func (c *confinedFS) refuse(err error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fatal == nil {
		c.fatal = err
	}
	return err
}

// rel names p for an error message: relative to the root, so that messages
// do not depend on where the snapshot was checked out, or absolute for a
// path in a clone of a remote base.
func (c *confinedFS) rel(p string) string {
	if c.inClone(p) {
		return p
	}
	if r, err := filepath.Rel(c.root, p); err == nil {
		return filepath.ToSlash(r)
	}
	return p
}

// within reports whether p is dir or below it. Both must be clean and
// absolute.
func within(dir, p string) bool {
	r, err := filepath.Rel(dir, p)
	return err == nil && r != ".." && !strings.HasPrefix(r, ".."+string(filepath.Separator))
}

// inClone reports whether p is inside one of kustomize's clone directories
// (and remote bases are allowed).
func (c *confinedFS) inClone(p string) bool {
	if c.cloneDir == "" || !within(c.cloneDir, p) {
		return false
	}
	r, _ := filepath.Rel(c.cloneDir, p)
	first, _, _ := strings.Cut(r, string(filepath.Separator))
	return strings.HasPrefix(first, "kustomize-")
}

func (c *confinedFS) allowed(p string) bool {
	return within(c.root, p) || c.inClone(p)
}

// resolve returns the absolute, symlink-free form of name, or an error if
// name or what it resolves to is outside the root. Relative names are taken
// relative to the root. Callers operate on the returned path only, so what
// was checked is what is read. The parts of name that do not exist are kept
// as they are: they contain no symlink to follow.
func (c *confinedFS) resolve(name string) (string, error) {
	real, err := c.lookup(name)
	if esc := (*escapeError)(nil); errors.As(err, &esc) {
		return "", c.refuse(err)
	}
	return real, err
}

// lookup is resolve for a path the build may never read: an escape is an
// *escapeError, not recorded as the build's refusal.
func (c *confinedFS) lookup(name string) (string, error) {
	p := c.abs(name)
	if !c.allowed(p) {
		return "", &escapeError{c.rel(p) + ": path escapes the repository root"}
	}
	real, err := evalExisting(p)
	if err != nil {
		return "", fmt.Errorf("%s: %w", c.rel(p), err)
	}
	if !c.allowed(real) {
		return "", &escapeError{c.rel(p) + ": symlink escapes the repository root"}
	}
	return real, nil
}

// escapeError is a path that leads outside the root.
type escapeError struct{ msg string }

func (e *escapeError) Error() string { return e.msg }

// abs returns name cleaned and made absolute, relative names being taken
// relative to the root.
func (c *confinedFS) abs(name string) string {
	if !filepath.IsAbs(name) {
		return filepath.Join(c.root, name)
	}
	return filepath.Clean(name)
}

// evalExisting is filepath.EvalSymlinks for a path whose last elements may
// not exist yet. A dangling symlink is an error: it cannot be checked, and
// following it later could reach whatever appears at its target.
func evalExisting(p string) (string, error) {
	rest := ""
	for {
		real, err := filepath.EvalSymlinks(p)
		if err == nil {
			return filepath.Join(real, rest), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		if _, lerr := os.Lstat(p); lerr == nil {
			return "", fmt.Errorf("dangling symlink: %w", fs.ErrNotExist)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return "", err
		}
		rest = filepath.Join(filepath.Base(p), rest)
		p = parent
	}
}

// ReadFile reads a regular file inside the root, within the size limits,
// and checks it before kustomize parses it: YAML bounds and the object
// count (bounds.go), remote references (remote.go); it also records the
// secret values it holds (secrets.go).
func (c *confinedFS) ReadFile(name string) ([]byte, error) {
	real, err := c.resolve(name)
	if err != nil {
		return nil, err
	}
	// Errors name the file as kustomize asked for it, not its target.
	shown := c.rel(c.abs(name))
	data, err := c.readLimited(real, shown)
	if err != nil {
		return nil, err
	}
	if err := c.checkContent(shown, real, data); err != nil {
		return nil, c.refuse(err)
	}
	return data, nil
}

// readLimited reads the regular file at real (already resolved), counting
// it against the build's limits. Errors call it name. A file countListed
// has read already is not read again: what was counted is what is built.
func (c *confinedFS) readLimited(real, name string) ([]byte, error) {
	c.mu.Lock()
	pre, ok := c.preread[real]
	c.mu.Unlock()
	data := pre.data
	if !ok {
		var err error
		data, err = readRegular(real, c.maxFile)
		var special *specialFileError
		var large *largeFileError
		switch {
		case errors.As(err, &special):
			return nil, c.refuse(fmt.Errorf("%s: not a regular file (%s): special files are never read", name, fileType(special.mode)))
		case errors.As(err, &large) && large.size >= 0:
			return nil, c.refuse(&LimitError{Limit: "MaxFileSize", Msg: fmt.Sprintf("%s is %d bytes, over the limit of %d", name, large.size, c.maxFile)})
		case errors.As(err, &large):
			return nil, c.refuse(&LimitError{Limit: "MaxFileSize", Msg: fmt.Sprintf("%s is over the limit of %d bytes", name, c.maxFile)})
		case err != nil:
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	c.mu.Lock()
	c.read += int64(len(data))
	total := c.read
	c.mu.Unlock()
	if total > c.maxTotal {
		return nil, c.refuse(&LimitError{Limit: "MaxTotalRead", Msg: fmt.Sprintf("reading %s takes the build over %d bytes read", name, c.maxTotal)})
	}
	return data, nil
}

// readRegular reads the file real, which must be a regular file of at most
// max bytes. A FIFO, socket or device is refused by its type before it is
// opened (opening a FIFO blocks until a writer comes), and opened without
// blocking in case it was swapped in since: a *specialFileError. A file
// over max is a *largeFileError, before it is read when its size says so.
func readRegular(real string, max int64) ([]byte, error) {
	if info, err := os.Stat(real); err != nil {
		return nil, err
	} else if !info.Mode().IsRegular() {
		return nil, &specialFileError{info.Mode()}
	}
	f, err := os.OpenFile(real, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, &specialFileError{info.Mode()}
	}
	if info.Size() > max {
		return nil, &largeFileError{info.Size()}
	}
	// The limit again while reading, in case the file grows.
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, &largeFileError{-1}
	}
	return data, nil
}

// specialFileError is a file that is not a regular one.
type specialFileError struct{ mode fs.FileMode }

func (e *specialFileError) Error() string { return "not a regular file (" + fileType(e.mode) + ")" }

// largeFileError is a file over the size limit: its size, or -1 when it
// grew past the limit while it was read.
type largeFileError struct{ size int64 }

func (e *largeFileError) Error() string { return "file too large" }

// fileType names a non-regular file's type for an error.
func fileType(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "mode " + m.String()
}

// checkContent checks one file the build read: its YAML bounds and
// objects, and, for a kustomization file, that it is well formed and
// refers to no remote content (malformed files are refused here so that
// the error names them; kustomize's own message does not); for another
// file, that a builtin plugin configuration in it refers to no remote
// content. A file is taken as a kustomization when kustomize asked for it
// by a kustomization file name (name) or when it is one (real: a symlink
// named otherwise may point at it). The secret values of the file are
// recorded first, so that even a refusal's message can be scrubbed.
func (c *confinedFS) checkContent(name, real string, data []byte) error {
	c.mu.Lock()
	left := c.maxObjects - c.objects
	pre, counted := c.preread[real]
	delete(c.preread, real)
	c.mu.Unlock()
	st, err := pre.stats, error(nil)
	if !counted || st.objects > left {
		st, err = checkYAML(name, data, c.maxDepth, left)
	}
	c.secrets.scanFile(real, data, st.docs)
	c.secrets.scanPluginConfigs(st.docs, c.secrets.configDirs(real), c.lookup)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.objects += st.objects
	objects := c.objects
	c.mu.Unlock()
	if objects > c.maxObjects {
		return &LimitError{Limit: "MaxObjects", Msg: fmt.Sprintf("reading %s takes the build over %d objects", name, c.maxObjects)}
	}
	for _, k := range konfig.RecognizedKustomizationFileNames() {
		if filepath.Base(name) == k || filepath.Base(real) == k {
			kust, err := checkKustomization(name, data, c.allowRemote)
			if kust != nil {
				c.secrets.scanKustomization(kust, filepath.Dir(real), c.resolve)
			}
			if err == nil {
				err = c.checkInline(name, kust)
			}
			if err == nil {
				err = c.countListed(name, kust)
			}
			return err
		}
	}
	return checkPluginConfigs(name, data, c.allowRemote)
}

// checkInline applies the YAML bounds to the documents a kustomization
// holds inline (patches, generator, transformer and validator
// configurations), which kustomize parses without reading a file.
func (c *confinedFS) checkInline(name string, k *types.Kustomization) error {
	var inline []string
	for _, p := range slices.Concat(k.Patches, k.PatchesJson6902) {
		inline = append(inline, p.Patch)
	}
	for _, p := range k.PatchesStrategicMerge {
		inline = append(inline, string(p))
	}
	inline = append(inline, inlineConfigs(k)...)
	for _, doc := range inline {
		if !strings.Contains(doc, "\n") && !strings.ContainsAny(doc, "{[&*") {
			continue // a path, or a one-line scalar
		}
		if _, err := checkYAML(name+" (inline)", []byte(doc), c.maxDepth, c.maxObjects); err != nil {
			return err
		}
	}
	return nil
}

// countListed refuses the kustomization k (the file name) when the files
// its resources list hold, with the objects read so far, more than
// maxObjects objects. kustomize reads those files one at a time and
// accumulates each file's objects before it reads the next, with id
// lookups that take time growing with the square of the objects so far:
// counting each file only as it is read would let ten files of 10,000
// objects spin for minutes before the third one is read. Only files
// listed directly are counted here (bases are counted when their
// kustomization is read), each distinct file once however often it is
// listed, and only as far as the read limits go; a file that cannot be
// read or checked counts as none and is left to kustomize's own read,
// which reports it.
func (c *confinedFS) countListed(name string, k *types.Kustomization) error {
	c.mu.Lock()
	total, budget := c.objects, c.maxTotal-c.read
	c.mu.Unlock()
	dir := filepath.Dir(c.abs(name))
	counts := map[string]int{}
	for _, r := range k.Resources {
		p := c.abs(joinLocal(dir, strings.TrimSpace(r)))
		n, ok := counts[p]
		if !ok {
			n, budget = c.countFile(p, budget, c.maxObjects-total)
			counts[p] = n
		}
		if total += n; total > c.maxObjects {
			return &LimitError{Limit: "MaxObjects", Msg: fmt.Sprintf("the resources %s lists take the build over %d objects", name, c.maxObjects)}
		}
	}
	return nil
}

// countFile returns the objects in the file at p (counted up to just over
// left), read within budget bytes, and what is left of the budget.
// Anything but a regular file inside the root, within the limits and with
// YAML that passes its checks counts as none.
func (c *confinedFS) countFile(p string, budget int64, left int) (int, int64) {
	real, err := c.lookup(p)
	if err != nil {
		return 0, budget
	}
	data, err := readRegular(real, min(c.maxFile, budget))
	budget -= int64(len(data))
	if err != nil {
		return 0, budget
	}
	st, err := checkYAML(p, data, c.maxDepth, left)
	if err != nil {
		return 0, budget
	}
	// kustomize reads the file next: it gets these bytes, and they are
	// not parsed again (see readLimited and checkContent).
	c.mu.Lock()
	c.preread[real] = prereadFile{data: data, stats: st}
	c.mu.Unlock()
	return st.objects, budget
}

// CleanedAbs splits a path inside the root into its directory and file name
// (empty for a directory), like the on-disk implementation but without its
// log.Fatalf on unexpected input.
func (c *confinedFS) CleanedAbs(name string) (filesys.ConfirmedDir, string, error) {
	real, err := c.resolve(name)
	if err != nil {
		return "", "", err
	}
	info, err := os.Stat(real)
	if err != nil {
		return "", "", fmt.Errorf("%s: %w", c.rel(real), err)
	}
	if info.IsDir() {
		return filesys.ConfirmedDir(real), "", nil
	}
	return filesys.ConfirmedDir(filepath.Dir(real)), filepath.Base(real), nil
}

// Exists reports whether name exists inside the root.
func (c *confinedFS) Exists(name string) bool {
	real, err := c.resolve(name)
	if err != nil {
		return false
	}
	_, err = os.Stat(real)
	return err == nil
}

// IsDir reports whether name is a directory inside the root.
func (c *confinedFS) IsDir(name string) bool {
	real, err := c.resolve(name)
	if err != nil {
		return false
	}
	info, err := os.Stat(real)
	return err == nil && info.IsDir()
}

// ReadDir lists a directory inside the root.
func (c *confinedFS) ReadDir(name string) ([]string, error) {
	real, err := c.resolve(name)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(real)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.rel(real), err)
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names, nil
}

// Glob matches pattern inside the root, leaving out hidden files unless the
// pattern names them, like the on-disk implementation. Every match must
// resolve inside the root.
func (c *confinedFS) Glob(pattern string) ([]string, error) {
	pattern = c.abs(pattern)
	if _, err := c.resolve(globPrefix(pattern)); err != nil {
		return nil, err
	}
	matches, err := filepath.Glob(pattern)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.rel(pattern), err)
	}
	for _, m := range matches {
		if _, err := c.resolve(m); err != nil {
			return nil, err
		}
	}
	if filesys.IsHiddenFilePath(pattern) {
		return matches, nil
	}
	return filesys.RemoveHiddenFiles(matches), nil
}

// globPrefix returns the directory part of pattern before its first
// wildcard.
func globPrefix(pattern string) string {
	i := strings.IndexAny(pattern, `*?[\`)
	if i < 0 {
		return pattern
	}
	return filepath.Dir(pattern[:i+1])
}

// Walk walks a directory inside the root. Like filepath.Walk it does not
// follow symlinks; reading what it finds goes through ReadFile again.
func (c *confinedFS) Walk(name string, fn filepath.WalkFunc) error {
	real, err := c.resolve(name)
	if err != nil {
		return err
	}
	return filepath.Walk(real, fn)
}

// Open is refused: krusty builds read through ReadFile, which the limits
// cover, and an open file would escape them.
func (c *confinedFS) Open(name string) (filesys.File, error) {
	return nil, fmt.Errorf("%s: open: not supported by the build's file system (reads go through ReadFile)", name)
}

// RemoveAll is refused except on kustomize's own clones of remote bases,
// which it removes when it is done with them.
func (c *confinedFS) RemoveAll(name string) error {
	p := filepath.Clean(name)
	if filepath.IsAbs(p) && c.inClone(p) && p != c.cloneDir {
		return os.RemoveAll(p)
	}
	return c.readOnly(name)
}

func (c *confinedFS) Create(name string) (filesys.File, error) { return nil, c.readOnly(name) }
func (c *confinedFS) Mkdir(name string) error                  { return c.readOnly(name) }
func (c *confinedFS) MkdirAll(name string) error               { return c.readOnly(name) }
func (c *confinedFS) WriteFile(name string, _ []byte) error    { return c.readOnly(name) }

func (c *confinedFS) readOnly(name string) error {
	return fmt.Errorf("%s: the snapshot is read-only during a build", c.rel(c.abs(name)))
}
