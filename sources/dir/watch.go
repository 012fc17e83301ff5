package dir

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/fsnotify/fsnotify"
)

// watchSet keeps an fsnotify watch on every directory of the tree, since
// fsnotify does not recurse, and one on Path's parent, where a swap of Path
// itself shows. It belongs to Run's goroutine.
type watchSet struct {
	fsw    *fsnotify.Watcher
	path   string              // absolute Path, unresolved
	parent string              // directory holding path
	root   string              // path resolved when the tree was last watched
	dirs   map[string]struct{} // watched directories of the tree at root
}

func newWatchSet(fsw *fsnotify.Watcher, path string) *watchSet {
	return &watchSet{fsw: fsw, path: path, parent: filepath.Dir(path), dirs: map[string]struct{}{}}
}

// start watches Path's parent and the tree. An error means the watch could
// not be set up at all.
func (w *watchSet) start() error {
	if err := w.fsw.Add(w.parent); err != nil {
		return err
	}
	return w.resync()
}

// resync resolves Path again and watches the tree it now points to, from
// scratch: after a swap of Path, or when events may have been lost.
func (w *watchSet) resync() error {
	w.drop(func(string) bool { return true })
	root, err := filepath.EvalSymlinks(w.path)
	if err != nil {
		return err // Path is gone, perhaps mid-swap; its return shows in the parent
	}
	w.root = root
	return w.add(root)
}

// add watches dir and every directory below it but .git. A directory that
// vanishes while it is being added is skipped: its removal is an event of
// its own.
func (w *watchSet) add(dir string) error {
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if d.Name() == ".git" && p != dir {
			return fs.SkipDir
		}
		// The watch goes on before WalkDir lists p, so an entry created in
		// between is either listed or reported.
		if err := w.fsw.Add(p); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return fs.SkipDir
			}
			return err
		}
		w.dirs[p] = struct{}{}
		return nil
	})
	return err
}

// drop stops watching the tree's directories that match.
func (w *watchSet) drop(match func(dir string) bool) {
	for p := range w.dirs {
		if !match(p) {
			continue
		}
		delete(w.dirs, p)
		if p != w.parent {
			// An error means inotify already dropped the watch with the
			// directory.
			_ = w.fsw.Remove(p)
		}
	}
}

// handle updates the watches for ev and reports whether ev may change the
// tree's content.
func (w *watchSet) handle(ev fsnotify.Event) bool {
	name := ev.Name
	if name == w.path || name == w.root {
		// Path itself was swapped, removed or created, or the tree's root
		// changed: watch whatever Path points to now. An error leaves
		// nothing watched until Path shows up again in its parent.
		_ = w.resync()
		return true
	}
	_, inTree := w.dirs[filepath.Dir(name)]
	_, isDir := w.dirs[name]
	if !inTree && !isDir {
		return false // a sibling of Path in its parent, such as git-sync's .worktrees
	}
	if filepath.Base(name) == ".git" {
		return false
	}
	if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
		// A renamed directory's inotify watch follows it to its new name;
		// drop it and watch the new name afresh when its Create arrives.
		prefix := name + string(filepath.Separator)
		w.drop(func(p string) bool { return p == name || strings.HasPrefix(p, prefix) })
	}
	if ev.Has(fsnotify.Create) {
		if fi, err := os.Lstat(name); err == nil && fi.IsDir() {
			// A failure here leaves part of the tree unwatched; the
			// reconciler's periodic resync still covers it.
			_ = w.add(name)
		}
	}
	return true
}
